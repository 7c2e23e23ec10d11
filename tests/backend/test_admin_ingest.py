"""Ingest while `lorechat serve` holds the embedded index: routed through the server with the admin token (S5)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import DEMO_CONTENT, REPO

TOKEN = "admin-token-for-tests-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def lorechat(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pipeline.cli", *args]
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    tmp_path = tmp_path_factory.mktemp("admin")
    port = free_port()
    env = {
        **os.environ,
        "LORECHAT_DATA_DIR": str(tmp_path / "data"),
        "LORECHAT_CONFIG": str(REPO / "config.yaml"),
        "LORECHAT_SERVER__PORT": str(port),
        "LORECHAT_AUTH__ADMIN_TOKEN": TOKEN,
        "LORECHAT_LLM__TIERS": '[{"name": "extractive", "kind": "extractive"}]',
    }
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve"], env=env, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail("lorechat serve did not start")
        yield base, env
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_ingest_goes_through_the_running_server(server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    result = lorechat("ingest", str(DEMO_CONTENT / "hazel-marsh"), "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert "through it" in result.stderr
    report = json.loads(result.stdout)
    assert report["added"] > 0 and report["failed"] == []
    # The server's catalog was reloaded in place: the new creator is listed at once.
    creators = httpx.get(f"{base}/api/v1/creators").json()
    assert [c["slug"] for c in creators] == ["hazel-marsh"]


def test_without_the_token_the_cli_says_what_to_do(server: tuple[str, dict[str, str]]) -> None:
    _, env = server
    env = {key: value for key, value in env.items() if key != "LORECHAT_AUTH__ADMIN_TOKEN"}
    result = lorechat("ingest", str(DEMO_CONTENT / "hazel-marsh"), env=env)
    assert result.returncode == 3
    assert "in use by another lorechat process" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}"])
def test_admin_routes_refuse_anyone_without_the_token(
    server: tuple[str, dict[str, str]], authorization: str | None
) -> None:
    base, _ = server
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.post(f"{base}/api/v1/admin/ingest", json={"paths": [str(DEMO_CONTENT)]}, headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_i9_admin_ingest_of_a_folder_without_creators_is_a_failure_entry_not_500(
    server: tuple[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    base, _ = server
    root = tmp_path_factory.mktemp("no-creators")
    (root / "ada").mkdir()
    (root / "ada" / "notes.md").write_text("# Notes\n\nRye.\n", encoding="utf-8")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    response = httpx.post(f"{base}/api/v1/admin/ingest", json={"paths": [str(root)]}, headers=auth, timeout=60)
    assert response.status_code == 200, response.text
    assert [f["source"] for f in response.json()["failed"]] == [str(root)]
    assert "no creator folders" in response.json()["failed"][0]["error"]


@pytest.mark.parametrize(
    "body",
    [{"paths": ["/tmp/a\u0000b"]}, {"paths": ["/tmp"], "creator": "a\u0000"}, {"paths": ["/tmp"], "prune": "true"}],
    ids=["nul-path", "nul-creator", "string-bool"],
)
def test_i4_admin_ingest_refuses_unusable_fields_with_422(server: tuple[str, dict[str, str]], body: dict) -> None:
    base, _ = server
    response = httpx.post(f"{base}/api/v1/admin/ingest", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_input"


def sources_for(base: str, question: str) -> list[dict[str, object]]:
    """The `sources` event of one chat turn."""
    with httpx.stream("POST", f"{base}/api/v1/chat", json={"query": question}, timeout=60) as response:
        assert response.status_code == 200, response.read()
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "sources":
                sources: list[dict[str, object]] = json.loads(line.removeprefix("data: "))  # the list itself
                return sources
    raise AssertionError("the stream had no sources event")


def test_a_question_asked_again_after_an_ingest_sees_what_it_added(
    server: tuple[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Searches asked again are answered from the service's search cache; an ingest through the server is a write
    to the index, so the same question asked after it is searched again and finds the new document."""
    base, env = server
    question = "What does the marmalade orbit lantern ritual involve?"
    before = sources_for(base, question)
    assert sources_for(base, question) == before  # asked again: the same sources
    root = tmp_path_factory.mktemp("canary")
    (root / "ada-lantern").mkdir()
    (root / "ada-lantern" / "creator.yaml").write_text("name: Ada Lantern\n", encoding="utf-8")
    (root / "ada-lantern" / "ritual.md").write_text(
        "# The marmalade orbit lantern ritual\n\nThe marmalade orbit lantern ritual involves lighting one "
        "lantern for each orbit of the marmalade moon.\n",
        encoding="utf-8",
    )
    result = lorechat("ingest", str(root), "--json", env=env)
    assert result.returncode == 0, result.stderr
    after = sources_for(base, question)
    assert after[0]["creator"] == "ada-lantern", after
    assert all(source["creator"] != "ada-lantern" for source in before)


def test_i10_files_linked_from_outside_the_creator_folder_never_reach_visitors(
    server: tuple[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    base, _ = server
    root = tmp_path_factory.mktemp("links")
    secret = tmp_path_factory.mktemp("secret") / "leak.md"
    secret.write_text("# Quartermaster ledger\n\nThe quartermaster ledger password is tangerine-omega.\n")
    other = root / "other-creator"
    other.mkdir()
    (other / "creator.yaml").write_text("name: Other\n", encoding="utf-8")
    (other / "private.md").write_text("# Private\n\nThe other creator's harbour cipher is violet-nine.\n")
    creator = root / "link-tester"
    creator.mkdir()
    (creator / "creator.yaml").write_text("name: Link Tester\n", encoding="utf-8")
    (creator / "real.md").write_text("# Real\n\nThe link tester bakes copper rye on Sundays.\n", encoding="utf-8")
    os.symlink("real.md", creator / "alias.md")  # a link that stays inside the folder is fine
    os.symlink(secret, creator / "leak.md")
    os.symlink("/etc/passwd", creator / "passwd.txt")
    os.symlink(other / "private.md", creator / "borrowed.md")  # another creator's file is outside too
    os.symlink(creator / "real.md", other / "in-other.md")
    yaml_outside = tmp_path_factory.mktemp("yaml") / "creator.yaml"
    yaml_outside.write_text("name: Sneaky\nbio: The quartermaster ledger password is tangerine-omega.\n")
    sneaky = root / "sneaky"
    sneaky.mkdir()
    os.symlink(yaml_outside, sneaky / "creator.yaml")
    (sneaky / "notes.md").write_text("# Notes\n\nNothing here.\n", encoding="utf-8")

    auth = {"Authorization": f"Bearer {TOKEN}"}
    response = httpx.post(f"{base}/api/v1/admin/ingest", json={"paths": [str(root)]}, headers=auth, timeout=120)
    assert response.status_code == 200, response.text
    failed = {f["source"]: f["error"] for f in response.json()["failed"]}
    for source in (
        "link-tester/leak.md",
        "link-tester/passwd.txt",
        "link-tester/borrowed.md",
        "other-creator/in-other.md",
    ):
        assert "outside the creator folder" in failed[source], failed
    assert any("sneaky" in source and "outside the creator folder" in error for source, error in failed.items())

    for question in ("What is the quartermaster ledger password?", "root x 0 0 root /bin/bash", "harbour cipher"):
        for source in sources_for(base, question):
            text = json.dumps(source)
            assert "tangerine-omega" not in text and "root:x:0:0" not in text, source
            assert not (source["creator"] == "link-tester" and "violet-nine" in text), source
    linked = [
        s for s in sources_for(base, "What does the link tester bake on Sundays?") if s["creator"] == "link-tester"
    ]
    assert linked, "the folder's own files, and links inside it, are indexed"
