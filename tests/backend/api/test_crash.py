"""F13: the real `lorechat serve` killed with SIGKILL mid-stream: its turn is recognised as dead within one
lease, by a restarted or an already running process, and the conversation takes turns again (INV-1).

Regression tests for issue 9 item 2: the answer stayed "streaming" (next turn 409) until a restart at least
`server.reaper_seconds` (600 s) after the crash.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from backend.settings import DatabaseSettings, Settings
from backend.storage.db import create_engine, session_factory
from tests.backend.api.harness import Backend, upstream_tier
from tests.backend.api.streams import parse_sse, post_chat, read_tokens, stored_turn
from tests.conftest import REPO
from tests.data_dirs import copy_data_dir
from tests.fakes import Script, ScriptedOpenAI

LEASE = 2.0  # server.stream_lease_seconds in these tests: renewed every 0.67 s
QUESTION = "What does salt do to the crumb?"


class Served:
    def __init__(self, process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
        self.process, self.base_url, self.log = process, base_url, log

    async def wait_ready(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url) as client:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if (await client.get("/healthz", timeout=1)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                tail = self.log.read_text(errors="replace")[-2000:]
                assert self.process.poll() is None and time.monotonic() < deadline, f"serve did not start:\n{tail}"
                await asyncio.sleep(0.2)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(
    *, data_dir: Path, database_url: str, fake: ScriptedOpenAI, log: Path, env_extra: dict[str, str] | None = None
) -> Iterator[Served]:
    """`python -m pipeline.cli serve` on `data_dir`, configured only through LORECHAT_* variables."""
    port = _free_port()
    tier = upstream_tier(fake).model_dump(include={"name", "kind", "base_url", "model"})
    tier |= {"first_token_timeout_seconds": 5, "idle_timeout_seconds": 5}
    env = {key: value for key, value in os.environ.items() if not key.startswith("LORECHAT_")}
    env |= {
        "LORECHAT_CONFIG": str(data_dir.parent / "no-config.yaml"),
        "LORECHAT_DATA_DIR": str(data_dir),
        "LORECHAT_DATABASE__URL": database_url,
        "LORECHAT_SERVER__PORT": str(port),
        "LORECHAT_SERVER__STREAM_LEASE_SECONDS": str(LEASE),
        "LORECHAT_LLM__TIERS": json.dumps([tier]),
        "LORECHAT_LOG_LEVEL": "WARNING",
    }
    env |= env_extra or {}
    with log.open("ab") as output:
        command = [sys.executable, "-m", "pipeline.cli", "serve"]
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield Served(process, f"http://127.0.0.1:{port}", log)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


async def _stream_then_kill(served: Served, upstream: ScriptedOpenAI) -> str:
    """Start a long answer on `served`, SIGKILL it after 3 tokens; the conversation id."""
    upstream.enqueue(Script(tokens=[f" word{i}" for i in range(300)], token_interval=0.1))
    async with (
        httpx.AsyncClient(base_url=served.base_url, timeout=30) as client,
        client.stream("POST", "/api/v1/chat", json={"query": QUESTION}) as response,
    ):
        assert response.status_code == 200
        await read_tokens(response.aiter_raw(), 3)
        served.process.send_signal(signal.SIGKILL)
        served.process.wait(timeout=10)
        return response.headers["x-conversation-id"]


async def _answer_status(database_url: str, data_dir: Path, conversation_id: str) -> tuple[str, str | None]:
    engine = create_engine(Settings(data_dir=data_dir, database=DatabaseSettings(url=database_url)))
    try:
        answer = (await stored_turn(session_factory(engine), conversation_id)).messages[1]
    finally:
        await engine.dispose()
    return answer.status, answer.error_code


async def _next_turn(served: Served, conversation_id: str, *, within: float) -> float:
    """Ask again in the conversation until it is not 409 any more; how long that took."""
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as client:
        while True:
            reply = await post_chat(client, {"query": "And the crust?", "conversation_id": conversation_id})
            if reply.status != 409:
                assert reply.status == 200, reply.raw[:300]
                assert reply.stream.terminal.name == "done"
                return time.monotonic() - started
            assert time.monotonic() - started < within, "the dead turn still locks its conversation"
            await asyncio.sleep(0.2)


@pytest.fixture
def database_url(backend: Backend, tmp_path: Path) -> str:
    # One SQLite file for both processes of a test (a restart), or this run's PostgreSQL database.
    return backend.database_url or f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"


def _data_dir(api_index: Path, tmp_path: Path, name: str) -> Path:
    # Each process has its own copy of the index: an Edge shard takes one handle per process.
    return copy_data_dir(api_index, tmp_path / name)


async def test_f13_a_turn_killed_mid_stream_does_not_lock_its_conversation_after_a_restart(
    api_index: Path, upstream: ScriptedOpenAI, tmp_path: Path, database_url: str
) -> None:
    data_dir = _data_dir(api_index, tmp_path, "data")
    log = tmp_path / "serve.log"
    with serve(data_dir=data_dir, database_url=database_url, fake=upstream, log=log) as first:
        await first.wait_ready()
        conversation = await _stream_then_kill(first, upstream)
    killed = time.monotonic()
    with serve(data_dir=data_dir, database_url=database_url, fake=upstream, log=log) as second:
        await second.wait_ready()
        upstream.enqueue(Script(tokens=["Crisp", "."]))
        await _next_turn(second, conversation, within=LEASE + 5)
    assert time.monotonic() - killed < 180  # bounded by start-up and one lease, not server.reaper_seconds
    assert await _answer_status(database_url, data_dir, conversation) == ("interrupted", "upstream_interrupted")


@pytest.mark.services
async def test_f13_on_shared_postgresql_a_running_peer_reaps_a_dead_turn_and_spares_live_ones(
    api_index: Path, upstream: ScriptedOpenAI, tmp_path: Path, api_pg_url: str
) -> None:
    log = tmp_path / "serve.log"
    peer_dir, doomed_dir = _data_dir(api_index, tmp_path, "peer"), _data_dir(api_index, tmp_path, "doomed")
    with (
        serve(data_dir=peer_dir, database_url=api_pg_url, fake=upstream, log=log) as peer,
        serve(data_dir=doomed_dir, database_url=api_pg_url, fake=upstream, log=log) as doomed,
    ):
        await asyncio.gather(peer.wait_ready(), doomed.wait_ready())
        # A live answer streaming for three leases is renewed by its process: the peer's reaper leaves it.
        upstream.enqueue(Script(tokens=[f" t{i}" for i in range(60)], token_interval=0.1))
        async with httpx.AsyncClient(base_url=doomed.base_url, timeout=30) as client:
            live = await post_chat(client, {"query": QUESTION})
        assert live.stream.terminal.name == "done" and len(live.stream.tokens) == 60
        assert await _answer_status(api_pg_url, peer_dir, live.conversation_id) == ("done", None)

        conversation = await _stream_then_kill(doomed, upstream)
        killed = time.monotonic()
        # Nobody asks: the running peer's reaper finds the lapsed lease by itself, within a lease and a round.
        while (status := await _answer_status(api_pg_url, peer_dir, conversation))[0] == "streaming":
            assert time.monotonic() - killed < LEASE * 4 / 3 + 3, "the peer did not reap the dead turn"
            await asyncio.sleep(0.2)
        assert status == ("interrupted", "upstream_interrupted")
        upstream.enqueue(Script(tokens=["Crisp", "."]))
        await _next_turn(peer, conversation, within=0)  # the very first try is answered, no 409


async def test_f13_an_answer_a_peer_reaped_ends_with_error_not_done(main_app, upstream: ScriptedOpenAI, db) -> None:
    # This process could not renew for a whole lease (database away) and a peer finished the answer as
    # interrupted: its final write finds nothing to write, so the client must not see `done` (INV-2).
    from sqlalchemy import update

    from backend.storage.models import Message

    upstream.enqueue(Script(tokens=[f" w{i}" for i in range(20)], token_interval=0.05))
    async with (
        main_app.client() as client,
        client.stream("POST", "/api/v1/chat", json={"query": QUESTION}) as response,
    ):
        chunks = response.aiter_raw()
        raw = await read_tokens(chunks, 2)
        async with db() as session, session.begin():
            await session.execute(
                update(Message)
                .where(Message.conversation_id == response.headers["x-conversation-id"], Message.status == "streaming")
                .values(status="interrupted", error_code="upstream_interrupted")
            )
        async for chunk in chunks:
            raw += chunk
    stream = parse_sse(raw)
    assert stream.terminal.name == "error" and stream.terminal.data["retryable"] is True


@pytest.mark.services
async def test_f13_a_resumed_stream_whose_replica_died_ends_with_a_retryable_error(
    api_index: Path, upstream: ScriptedOpenAI, tmp_path: Path, api_pg_url: str, api_redis_url: str
) -> None:
    # Resumable streams: the visitor left the doomed replica and follows the answer from a peer; when the doomed
    # replica is killed no terminal event will ever be logged, so the follower must end once the peer reaps it.
    log = tmp_path / "serve.log"
    env = {"LORECHAT_REDIS__URL": api_redis_url}
    peer_dir, doomed_dir = _data_dir(api_index, tmp_path, "peer"), _data_dir(api_index, tmp_path, "doomed")
    with (
        serve(data_dir=peer_dir, database_url=api_pg_url, fake=upstream, log=log, env_extra=env) as peer,
        serve(data_dir=doomed_dir, database_url=api_pg_url, fake=upstream, log=log, env_extra=env) as doomed,
    ):
        await asyncio.gather(peer.wait_ready(), doomed.wait_ready())
        words = [f" word{i}" for i in range(300)]
        upstream.enqueue(Script(tokens=words, token_interval=0.1))
        async with (
            httpx.AsyncClient(base_url=doomed.base_url, timeout=60) as on_doomed,
            httpx.AsyncClient(base_url=peer.base_url, timeout=60) as on_peer,
        ):
            async with on_doomed.stream("POST", "/api/v1/chat", json={"query": QUESTION}) as response:
                conversation = response.headers["x-conversation-id"]
                await read_tokens(response.aiter_raw(), 3)
            path = f"/api/v1/conversations/{conversation}/stream"
            async with on_peer.stream("GET", path, headers={"Last-Event-ID": "0"}) as resumed:
                assert resumed.status_code == 200
                chunks = resumed.aiter_raw()
                raw = await read_tokens(chunks, 6)
                doomed.process.send_signal(signal.SIGKILL)
                doomed.process.wait(timeout=10)
                killed = time.monotonic()
                async for chunk in chunks:
                    raw += chunk
            ended_after = time.monotonic() - killed
    stream = parse_sse(raw)
    error = stream.terminal
    assert error.name == "error" and error.data["code"] == "upstream_interrupted" and error.data["retryable"]
    assert "".join(words).startswith(stream.text) and len(stream.tokens) >= 6
    # One lease for the peer's reaper, then two of the follower's blocking reads (5 s each) to be sure.
    assert ended_after < LEASE * 4 / 3 + 2 * 5 + 5
    assert await _answer_status(api_pg_url, peer_dir, conversation) == ("interrupted", "upstream_interrupted")
