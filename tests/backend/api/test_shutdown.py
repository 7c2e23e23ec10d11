"""F12: SIGTERM with a stream open on the real `lorechat serve`: a retryable error, the partial stored."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.storage.db import create_engine, session_factory
from tests.backend.api.harness import (
    Backend,
    extractive_tier,
    make_settings,
    upstream_tier,
)
from tests.backend.api.streams import (
    check_stream,
    parse_sse,
    read_tokens,
    stored_turn,
)
from tests.conftest import REPO
from tests.data_dirs import copy_data_dir
from tests.fakes import Script, ScriptedOpenAI

QUESTION = "What does salt do to the crumb?"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(
    fake: ScriptedOpenAI, api_index: Path, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`python -m pipeline.cli serve` on a copy of the index, configured only through LORECHAT_* variables."""
    data_dir = tmp_path / "data"
    copy_data_dir(api_index, data_dir)
    port = _free_port()
    tier = upstream_tier(fake, first=5, idle=5).model_dump(include={"name", "kind", "base_url", "model"})
    tier |= {"first_token_timeout_seconds": 5, "idle_timeout_seconds": 5}
    env = {key: value for key, value in os.environ.items() if not key.startswith("LORECHAT_")}
    env |= {
        "LORECHAT_CONFIG": str(tmp_path / "no-config.yaml"),  # defaults + these variables, not the checkout's
        "LORECHAT_DATA_DIR": str(data_dir),
        "LORECHAT_SERVER__PORT": str(port),
        "LORECHAT_SERVER__KEEPALIVE_SECONDS": "1",
        "LORECHAT_LLM__TIERS": json.dumps([tier]),
        "LORECHAT_LOG_LEVEL": "WARNING",
    }
    log = (tmp_path / "serve.log").open("wb")
    command = [sys.executable, "-m", "pipeline.cli", "serve"]
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process, f"http://127.0.0.1:{port}", data_dir
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        log.close()


async def test_f12_sigterm_ends_open_streams_with_a_retryable_error(
    served: tuple[subprocess.Popen[bytes], str, Path], upstream: ScriptedOpenAI, tmp_path: Path
) -> None:
    process, base_url, data_dir = served
    upstream.enqueue(Script(tokens=[f" word{i}" for i in range(200)], token_interval=0.05))  # ten seconds
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        deadline = time.monotonic() + 120
        while not await _answers(client):
            log = (tmp_path / "serve.log").read_text(errors="replace")[-2000:]
            assert process.poll() is None and time.monotonic() < deadline, f"serve did not start:\n{log}"
            await asyncio.sleep(0.2)
        async with client.stream("POST", "/api/v1/chat", json={"query": QUESTION}) as response:
            assert response.status_code == 200
            conversation = response.headers["x-conversation-id"]
            chunks = response.aiter_raw()
            raw = await read_tokens(chunks, 3)
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            async for chunk in chunks:
                raw += chunk
            ended = time.monotonic() - signalled
    exit_code = await asyncio.to_thread(process.wait, 20)
    stream = parse_sse(raw)
    check_stream(stream)
    assert ended < 15  # our 5 s grace, inside uvicorn's 10 s
    assert exit_code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it caught, after shutting down
    if stream.terminal.name == "error":
        assert stream.terminal.data["code"] == "shutting_down" and stream.terminal.data["retryable"] is True
    assert upstream.wait_streams_closed(3)
    # The partial answer was stored before the process exited: read it back with a fresh engine.
    settings = make_settings(data_dir=data_dir, backend=Backend("embedded", "", ""), tiers=[extractive_tier()])
    engine = create_engine(settings)
    try:
        detail = await stored_turn(session_factory(engine), conversation)
    finally:
        await engine.dispose()
    user, answer = detail.messages
    assert (user.content, user.status) == (QUESTION, "done")
    assert answer.content == stream.text
    expected = ("done", None) if stream.terminal.name == "done" else ("interrupted", "shutting_down")
    assert (answer.status, answer.error_code) == expected


async def _answers(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/healthz", timeout=1)).status_code == 200
    except httpx.HTTPError:
        return False
