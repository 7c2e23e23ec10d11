"""`lorechat answers`: add, list, show, edit (versions kept), retire, and starter questions, on the service's own
SQLite database, printed inert and as JSON (CA2, CA3, CA7)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from backend.catalog import Catalog, CatalogCreator, CatalogDocument
from backend.settings import get_settings
from backend.stages import Creator
from backend.storage import catalog_store
from backend.storage.repository import Sessions
from pipeline.cli import main
from pipeline.curator_db import with_sessions

ANSWER_KEYS = {
    "id", "creator", "status", "version", "questions", "answer", "documents", "topic_id", "uses", "up", "down",
    "created_at", "updated_at", "retired_at", "history",
}  # fmt: skip


def run(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(main, list(args), input=stdin)


async def _catalog(sessions: Sessions) -> None:
    salt = CatalogDocument(
        document_id="hazel-marsh/articles/salt.md", title="Salt", source="salt.md", url=None, kind="article", chunks=3
    )

    def add(listed: Catalog) -> None:
        listed.creators["hazel-marsh"] = CatalogCreator(
            Creator(slug="hazel-marsh", name="Hazel Marsh"), {salt.document_id: salt}
        )

    await catalog_store.edit_catalog(sessions, add)


def test_ca2_answers_add_list_show_edit_retire(lorechat_env: Path, tmp_path: Path) -> None:
    with_sessions(get_settings(), _catalog)
    answer = tmp_path / "answer.md"
    answer.write_text("Two percent of the flour's weight: 10 g for a 500 g loaf.\n", encoding="utf-8")
    added = run(
        "answers", "add", "--creator", "hazel-marsh", "--question", "How much salt does Hazel use?",
        "--question", "What salt percentage?", "--answer-file", str(answer),
        "--source", "hazel-marsh/articles/salt.md", "--json",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    written = json.loads(added.stdout)
    assert set(written) == ANSWER_KEYS and written["version"] == 1 and written["status"] == "active"
    assert written["documents"] == ["hazel-marsh/articles/salt.md"] and written["creator"] == "hazel-marsh"

    edited = run("answers", "edit", written["id"], "--answer-file", "-", "--json", stdin="2 %, added late.\n")
    assert edited.exit_code == 0, edited.output
    assert json.loads(edited.stdout)["version"] == 2
    shown = json.loads(run("answers", "show", written["id"], "--json").stdout)
    assert shown["answer"] == "2 %, added late." and [v["version"] for v in shown["history"]] == [1]
    listed = json.loads(run("answers", "list", "--json").stdout)
    assert [a["id"] for a in listed] == [written["id"]] and listed[0]["uses"] == 0

    retired = run("answers", "retire", written["id"])
    assert retired.exit_code == 0, retired.output
    assert json.loads(run("answers", "list", "--json").stdout) == []
    assert [a["status"] for a in json.loads(run("answers", "list", "--all", "--json").stdout)] == ["retired"]
    again = run("answers", "retire", written["id"])
    assert again.exit_code != 0 and "no active curated answer" in again.output


def test_answers_refuse_bad_input_with_one_clean_line(lorechat_env: Path, tmp_path: Path) -> None:
    with_sessions(get_settings(), _catalog)
    answer = tmp_path / "answer.md"
    answer.write_text("An answer.", encoding="utf-8")
    common = ["--question", "Q?", "--answer-file", str(answer)]
    for args, complaint in (
        (["answers", "add", *common], "exactly one of --creator"),
        (["answers", "add", "--creator", "hazel-marsh", "--all-creators", *common], "exactly one of --creator"),
        (["answers", "add", "--creator", "nobody", *common], "unknown creator"),
        (["answers", "add", "--all-creators", *common, "--source", "hazel-marsh/missing.md"], "no document"),
        (["answers", "show", "not an id\x00"], "No such curated answer"),
        (["answers", "edit", "AAAAAAAAAAAAAAAAAAAAAA"], "nothing to change"),
    ):
        result = run(*args)
        assert result.exit_code != 0 and complaint in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_c1_answers_print_curator_text_inert(lorechat_env: Path, tmp_path: Path) -> None:
    answer = tmp_path / "answer.md"
    answer.write_text("Spoofed\x1b[2J answer\u202e.", encoding="utf-8")
    assert (
        run("answers", "add", "--all-creators", "--question", "Why\x1b[31m?", "--answer-file", str(answer)).exit_code
        == 0
    )
    listed = run("answers", "list")
    assert "\x1b" not in listed.stdout and "\\x1b" in listed.stdout


def test_ca7_starters_set_list_clear(lorechat_env: Path) -> None:
    with_sessions(get_settings(), _catalog)
    saved = run("answers", "starters", "set", "--creator", "hazel-marsh", "--question", "How much salt?",
                "--question", "What hydration?")  # fmt: skip
    assert saved.exit_code == 0, saved.output
    assert json.loads(run("answers", "starters", "list", "--json").stdout) == [
        {"creator": "hazel-marsh", "site": None, "questions": ["How much salt?", "What hydration?"]}
    ]
    too_many = run("answers", "starters", "set", *[arg for n in range(5) for arg in ("--question", f"Q{n}?")])
    assert too_many.exit_code != 0 and "at most 4" in too_many.output
    assert run("answers", "starters", "clear", "--creator", "hazel-marsh").exit_code == 0
    assert json.loads(run("answers", "starters", "list", "--json").stdout) == []
