"""`lorechat channels` with a real `lorechat serve` (CH1, CH5, CH6): a private address refused with a clear error,
the serving process syncing a due channel by itself, `channels sync` and `remove` going through the server that
holds the embedded index, an answer citing a podcast transcript at its cue (`#t=`), and the dashboard's channel
table with its last and next sync, counts and last error."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.backend.api.streams import parse_sse
from tests.backend.test_admin_ingest import TOKEN, free_port
from tests.conftest import REPO
from tests.fakes.web_server import WebServer
from tests.pipeline.channels.corpus import blog_feed, podcast_feed


def lorechat(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pipeline.cli", *args]
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def site() -> Iterator[WebServer]:
    with WebServer().running() as web:
        yield web


@pytest.fixture(scope="module")
def served(site: WebServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    port = free_port()
    env = {
        **os.environ,
        "LORECHAT_DATA_DIR": str(tmp_path_factory.mktemp("channels") / "data"),
        "LORECHAT_CONFIG": str(REPO / "config.yaml"),
        "LORECHAT_SERVER__PORT": str(port),
        "LORECHAT_AUTH__ADMIN_TOKEN": TOKEN,
        "LORECHAT_LLM__TIERS": '[{"name": "extractive", "kind": "extractive"}]',
        "LORECHAT_CHUNKING__SIZE_TOKENS": "32",
        "LORECHAT_CHUNKING__OVERLAP_TOKENS": "0",
        "LORECHAT_CHANNELS__ALLOW_PRIVATE_NETWORKS": "true",
        "LORECHAT_CHANNELS__PER_HOST_DELAY_SECONDS": "0",
        "LORECHAT_CHANNELS__SCHEDULER_SECONDS": "1",
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


def channels_json(env: dict[str, str]) -> list[dict[str, Any]]:
    result = lorechat("channels", "list", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_ch5_a_channel_at_a_private_address_is_refused_by_default(
    site: WebServer, served: tuple[str, dict[str, str]]
) -> None:
    _, env = served
    default = {**env, "LORECHAT_CHANNELS__ALLOW_PRIVATE_NETWORKS": "false"}
    result = lorechat("channels", "add", "ada", podcast_feed(site), env=default)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "127.0.0.1 is a private, loopback or link-local address: refused" in result.stderr
    assert "channels.allow_private_networks" in result.stderr
    assert channels_json(env) == []


def test_ch6_the_serving_process_syncs_a_due_channel_by_itself(
    site: WebServer, served: tuple[str, dict[str, str]]
) -> None:
    base, env = served
    added = lorechat("channels", "add", "ada", podcast_feed(site), "--json", env=env)
    assert added.returncode == 0, added.stderr
    channel = json.loads(added.stdout)
    assert (channel["kind"], channel["every"], channel["keep_missing"]) == ("podcast", "6h", True)  # sniffed
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        (listed,) = channels_json(env)
        if listed["last_status"]:
            break
        time.sleep(0.5)
    assert (listed["last_status"], listed["items"], listed["documents"], listed["last_error"]) == ("ok", 5, 5, None)
    assert listed["next_sync"] > listed["last_sync"]
    # The creators API sees it at once: the server refreshed its catalog after the background sync.
    assert [c["slug"] for c in httpx.get(f"{base}/api/v1/creators").json()] == ["ada"]


def test_ch1_an_answer_citing_a_podcast_transcript_links_to_the_cue(served: tuple[str, dict[str, str]]) -> None:
    base, _ = served
    response = httpx.post(
        f"{base}/api/v1/chat", json={"query": "What keeps a banneton from sticking?", "creator": "ada"}, timeout=60
    )
    assert response.status_code == 200
    sources = parse_sse(response.content).named("sources")[0].data
    cited = [s for s in sources if s["title"] == "Episode 1" and s["start_seconds"] is not None]
    assert cited and cited[0]["start_seconds"] == 65.5 and cited[0]["url"].endswith("/podcast/episodes/1")
    # The widget's link (frontend/src/format.ts sourceHref): the source's URL at the cue's whole second.
    assert f"{cited[0]['url']}#t={math.floor(cited[0]['start_seconds'])}".endswith("/podcast/episodes/1#t=65")


def test_ch1_sync_and_remove_go_through_the_server_holding_the_index(
    site: WebServer, served: tuple[str, dict[str, str]]
) -> None:
    base, env = served
    blog = json.loads(lorechat("channels", "add", "ada", blog_feed(site), "--every", "1d", "--json", env=env).stdout)
    result = lorechat("channels", "sync", "ada", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert "through it" in result.stderr
    reports = {report["kind"]: report for report in json.loads(result.stdout)}
    # The scheduler may have synced the new blog channel first (it is due at once): either way all of it is in.
    assert reports["feed"]["added"] + reports["feed"]["unchanged"] == 3 and reports["feed"]["failed"] == []
    assert (reports["podcast"]["unchanged"], reports["podcast"]["added"]) == (5, 0)
    assert reports["podcast"]["requests"]["not_modified"] >= 1
    table = httpx.get(f"{base}/admin/export/channels.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert [(row["kind"], row["status"], row["items"], row["documents"], row["every"]) for row in table] == [
        ("podcast", "ok", 5, 5, "6h"), ("feed", "ok", 3, 3, "1d"),
    ]  # fmt: skip
    assert all(row["last_sync"] and row["next_sync"] and row["last_error"] is None for row in table)
    runs = httpx.get(f"{base}/admin/export/ingest_runs.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert {run["origin"] for run in runs} == {"channel"}
    removed = lorechat("channels", "remove", str(blog["id"]), "--yes", env=env)
    assert removed.returncode == 0, removed.stderr
    assert "3 documents removed" in removed.stderr
    missing = lorechat("channels", "sync", str(blog["id"]), env=env)
    assert missing.returncode == 2 and "no channel with id" in missing.stderr


def test_ch6_channels_run_says_the_server_schedules_while_it_holds_the_index(
    served: tuple[str, dict[str, str]],
) -> None:
    _, env = served
    result = lorechat("channels", "run", "--once", env=env)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert "in use by another lorechat process" in result.stderr and "syncs due channels itself" in result.stderr
