"""`lorechat sites` and `lorechat gaps` on a real SQLite database in a fresh data dir: JSON shapes, exit codes,
usage errors; and `lorechat ingest` recording its run for the dashboard."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from backend.curation import runs_store
from backend.settings import get_settings
from backend.storage import repository as repo
from backend.storage.models import Message
from backend.storage.repository import Sessions
from pipeline.cli import main
from pipeline.curator_db import with_sessions

SITE_KEYS = {
    "name",
    "origins",
    "creators",
    "daily_limit",
    "requests_today",
    "refused_today",
    "requests_total",
    "created_at",
    "has_key",
}
TOPIC_KEYS = {"id", "creator", "status", "label", "count", "first_seen", "last_seen", "examples", "sources", "signals",
              "resolved_at", "answered_by"}  # fmt: skip


def run(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args))
    return result


def test_sites_add_list_remove(lorechat_env: Path) -> None:
    added = run("sites", "add", "bakery", "--origin", "https://Blog.Example.com:443/", "--origin", "http://localhost:3000",
                "--creator", "ada", "--daily-limit", "50", "--json")  # fmt: skip
    assert added.exit_code == 0, added.output
    site = json.loads(added.stdout)
    assert set(site) == SITE_KEYS
    assert site["origins"] == ["http://localhost:3000", "https://blog.example.com"]  # normalized, sorted
    assert (site["creators"], site["daily_limit"], site["requests_today"]) == (["ada"], 50, 0)

    listed = run("sites", "list", "--json")
    assert listed.exit_code == 0 and [s["name"] for s in json.loads(listed.stdout)] == ["bakery"]
    plain = run("sites", "list")
    assert "bakery" in plain.stdout and "today 0/50" in plain.stdout

    duplicate = run("sites", "add", "bakery", "--origin", "https://other.example")
    assert duplicate.exit_code == 1 and "exists already" in duplicate.output
    assert run("sites", "remove", "bakery").exit_code == 0
    assert json.loads(run("sites", "list", "--json").stdout) == []
    missing = run("sites", "remove", "bakery")
    assert missing.exit_code == 2 and "no site named 'bakery'" in missing.output


def test_m1_sites_key_is_shown_once_and_stored_hashed(lorechat_env: Path) -> None:
    """`lorechat sites key`: the key for agents (the MCP server) is printed once; only its SHA-256 is kept."""
    from backend.curation import sites_store
    from backend.curation.sites import site_key_hash

    assert run("sites", "add", "bakery", "--origin", "https://blog.example").exit_code == 0
    made = run("sites", "key", "bakery", "--json")
    assert made.exit_code == 0, made.output
    key = json.loads(made.stdout)["key"]
    assert key.startswith("lck_bakery_") and len(key) > 40
    [listed] = json.loads(run("sites", "list", "--json").stdout)
    assert listed["has_key"] is True and key not in json.dumps(listed)
    found = with_sessions(get_settings(), lambda s: sites_store.get_site_with_key(s, name="bakery"))
    assert found is not None and found[1] == site_key_hash(key) != key
    again = run("sites", "key", "bakery")  # a new key replaces the old one
    assert again.exit_code == 0 and again.stdout.strip() != key and again.stdout.startswith("lck_bakery_")
    missing = run("sites", "key", "nobody")
    assert missing.exit_code == 2 and "no site named 'nobody'" in missing.output


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["sites", "add", "x", "--origin", "ftp://files.example"], "not an http(s) origin"),
        (["sites", "add", "x", "--origin", "https://a.example/path"], "scheme://host[:port] only"),
        (["sites", "add", "Bad Name", "--origin", "https://a.example"], "site name uses"),
        (["sites", "add", "x"], "Missing option '--origin'"),
        (["sites", "add", "x", "--origin", "https://a.example", "--daily-limit", "-1"], "-1"),
        (["gaps", "--since", "yesterday"], "is not a date"),
    ],
)
def test_bad_input_is_a_usage_error(lorechat_env: Path, args: list[str], complaint: str) -> None:
    result = run(*args)
    assert result.exit_code == 2 and complaint in result.output, result.output


async def _seed(sessions: Sessions) -> None:
    for creator, question, column in (
        ("ada", "How do I fold croissant dough?", {"unanswered": True}),
        ("ada", "What is the way to fold croissant dough?", {"unsupported_claims": 1}),
        ("ada", "Which oven temperature for rye?", {"unanswered": True}),
        (None, "Who invented bread?", {"unanswered": True}),
        ("ada", "A question answered well", {}),
    ):
        turn = await repo.start_turn(sessions, conversation_id=None, owner_id=None, creator=creator, question=question)
        await repo.finish_turn(
            sessions, assistant_message_id=turn.assistant_message_id, content="…", status=repo.MessageStatus.done,
            cascade_tier="local", sources=[{"document_id": "ada/a.md", "title": "Folding", "score": 0.3}], usage=None,
            search_query=question, error_code=None,
        )  # fmt: skip
        if column:
            async with sessions() as session, session.begin():
                await session.execute(update(Message).where(Message.id == turn.assistant_message_id).values(**column))


def test_gaps_lists_most_frequent_first_and_resolves(lorechat_env: Path) -> None:
    with_sessions(get_settings(), _seed)
    listed = run("gaps", "--json")
    assert listed.exit_code == 0, listed.output
    topics = json.loads(listed.stdout)
    assert all(set(topic) == TOPIC_KEYS for topic in topics)
    assert (topics[0]["creator"], topics[0]["count"]) == ("ada", 2)
    assert sorted((t["creator"] or "", t["count"]) for t in topics) == [("", 1), ("ada", 1), ("ada", 2)]
    assert topics[0]["sources"][0]["title"] == "Folding" and topics[0]["status"] == "open"

    only_ada = json.loads(run("gaps", "--creator", "ada", "--json").stdout)
    assert {t["creator"] for t in only_ada} == {"ada"} and len(only_ada) == 2
    assert json.loads(run("gaps", "--since", "2999-01-01", "--json").stdout) == []
    plain = run("gaps")
    assert "How do I fold croissant dough?" in plain.stdout or "What is the way" in plain.stdout

    resolved = run("gaps", "resolve", topics[0]["id"])
    assert resolved.exit_code == 0
    assert topics[0]["id"] not in {t["id"] for t in json.loads(run("gaps", "--json").stdout)}
    everything = json.loads(run("gaps", "--all", "--json").stdout)
    assert {t["id"]: t["status"] for t in everything}[topics[0]["id"]] == "resolved"
    unknown = run("gaps", "resolve", "AAAAAAAAAAAAAAAAAAAAAA")
    assert unknown.exit_code == 2 and "no gap topic" in unknown.output


def test_ingest_records_its_run(lorechat_env: Path, tmp_path: Path) -> None:
    creator = tmp_path / "content" / "ada"
    creator.mkdir(parents=True)
    (creator / "creator.yaml").write_text("name: Ada\n", encoding="utf-8")
    (creator / "notes.md").write_text("# Notes\n\nRye ferments fast.\n", encoding="utf-8")
    result = run("ingest", str(tmp_path / "content"), "--json")
    assert result.exit_code == 0, result.output
    runs = with_sessions(get_settings(), runs_store.recent_runs)
    assert [(r.origin, r.ok, r.dry_run, r.report["added"]) for r in runs] == [("cli", True, False, 1)]


# C1: what visitors, content or argv put in a listing reaches the curator's terminal inert.
HOSTILE_QUESTION = "\x1b[2J\x1b]0;owned\x07\rWhy is my \u202edough flat\u202c?\u2028 \x9b31m 🍞 面包 خبز"
HOSTILE_TITLE = "Fold\x1b[31ming\u2066 [bold]x[/]"


def inert(text: str) -> bool:
    """Nothing a terminal would act on between the line ends: no control, bidi, separator or surrogate character."""
    from pipeline.terminal import unsafe

    return not any(unsafe(char) for char in text.replace("\n", ""))


async def _seed_hostile(sessions: Sessions) -> None:
    turn = await repo.start_turn(
        sessions, conversation_id=None, owner_id=None, creator="ada", question=HOSTILE_QUESTION
    )
    await repo.finish_turn(
        sessions, assistant_message_id=turn.assistant_message_id, content="…", status=repo.MessageStatus.done,
        cascade_tier="local", sources=[{"document_id": "ada/a.md", "title": HOSTILE_TITLE, "score": 0.3}], usage=None,
        search_query=HOSTILE_QUESTION, error_code=None,
    )  # fmt: skip
    async with sessions() as session, session.begin():
        await session.execute(update(Message).where(Message.id == turn.assistant_message_id).values(unanswered=True))


def test_c1_gaps_listing_prints_visitor_text_inert(lorechat_env: Path) -> None:
    with_sessions(get_settings(), _seed_hostile)
    plain = run("gaps")
    assert plain.exit_code == 0, plain.output
    assert inert(plain.stdout), plain.stdout
    lines = plain.stdout.splitlines()
    assert len(lines) == 3  # topic, label, source: one record per line, the question's \r and U+2028 escaped
    escaped = "\\x1b[2J\\x1b]0;owned\\x07\\rWhy is my \\u202edough flat\\u202c?\\u2028 \\x9b31m 🍞 面包 خبز"
    assert lines[1] == f"    {escaped}"
    assert lines[2] == "    source: Fold\\x1b[31ming\\u2066 [bold]x[/]"

    as_json = run("gaps", "--json")
    assert as_json.exit_code == 0 and inert(as_json.stdout)
    [topic] = json.loads(as_json.stdout)
    assert topic["label"] == HOSTILE_QUESTION and topic["sources"][0]["title"] == HOSTILE_TITLE  # equal in value


def test_c1_sites_listing_and_errors_print_argv_inert(lorechat_env: Path) -> None:
    added = run("sites", "add", "bakery", "--origin", "https://bücher.example", "--json")
    assert added.exit_code == 0 and json.loads(added.stdout)["origins"] == ["https://xn--bcher-kva.example"]
    listed = run("sites", "list")
    assert listed.exit_code == 0 and inert(listed.stdout) and "xn--bcher-kva" in listed.stdout

    for args in (
        ["sites", "remove", "\x1b]0;owned\x07\r\u202e"],  # a LorechatError naming argv
        ["sites", "remove", "\udcff\udcfe-id"],  # bad bytes under surrogateescape: never looked up
        ["gaps", "resolve", "\udcff\udcfe-id"],
        ["gaps", "resolve", "\x1b[2J\u202e"],
        ["sites", "add", "\x1b[2J", "--origin", "https://a.example"],  # a usage error quoting argv
        ["sites", "add", "x", "--origin", "https://a.example", "--creator", "\x1b[2J\udcff"],
        ["sites", "add", "x", "--origin", "https://exa\u202emple.com\r"],
        ["gaps", "--\x1b[2J\u202e"],  # click's own "No such option" message
        ["sites", "\x1b]0;owned\x07"],  # and "No such command"
        ["--\x1b[2J"],
    ):
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert isinstance(result.exception, SystemExit), result.exception  # no traceback
        assert result.output and inert(result.output), (args, result.output)


def test_c1_bad_argv_bytes_end_in_a_clean_error(lorechat_env: Path) -> None:
    """As a shell runs it: `lorechat gaps resolve $'\\xff\\xfe-id'` exits 2 with one error line, no traceback."""
    for args, quoted in (
        ([b"gaps", b"resolve", b"\xff\xfe-id\x1b[2J"], ""),
        ([b"sites", b"remove", b"\xff\xfe\x1b[2J\r"], "'\\udcff\\udcfe\\x1b[2J\\r'"),
    ):
        done = subprocess.run(
            [sys.executable.encode(), b"-m", b"pipeline.cli", *args],
            capture_output=True, cwd=Path(__file__).parents[2], timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert b"Traceback" not in done.stderr and done.stdout == b""
        message = done.stderr.decode("utf-8")  # strict: no raw bad bytes
        assert message.startswith("error:") and message.count("\n") == 1 and inert(message), message
        assert quoted in message


@pytest.mark.parametrize(
    "origin",
    [
        "https://*.example.com",
        "https://exa mple.com",
        "https://ex<ample>.com",
        f"https://{'a' * 300}.example.com",
        "http://a..b",
        "https://blog.example.com\r",
        "https://blog\u202e.example.com",
        "https://-blog.example.com",
        "https://blog.example.com:0",
        "https://user@blog.example.com",
        "https://[::1",
        "https://999.1.1.1",
    ],
)
def test_c2_sites_add_refuses_malformed_origins(lorechat_env: Path, origin: str) -> None:
    result = run("sites", "add", "x", "--origin", "https://ok.example", "--origin", origin)
    assert result.exit_code == 2 and "--origin" in result.output, result.output
    assert inert(result.output), result.output
    assert json.loads(run("sites", "list", "--json").stdout) == []  # nothing stored
