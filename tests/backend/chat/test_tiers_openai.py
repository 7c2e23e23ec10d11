"""The `openai` tier: streaming, error mapping, and one run against llama-cpp-python's real server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from backend.chat.cascade import Cascade
from backend.chat.prompt import Prompt
from backend.chat.tiers.base import TextDelta, TierError, parse_retry_after
from backend.chat.tiers.llama_cpp_tier import default_model_path
from backend.chat.tiers.openai_tier import OpenAITier
from backend.settings import CircuitSettings, OpenAITierSettings
from tests.backend.chat.helpers import engine_prompt
from tests.fakes import Script, ScriptedOpenAI


@pytest.fixture
def fake() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as server:
        yield server


@pytest.fixture
async def tier(fake: ScriptedOpenAI) -> AsyncIterator[OpenAITier]:
    made = OpenAITier(OpenAITierSettings(name="remote", base_url=fake.base_url, model="scripted"))
    yield made
    await made.aclose()


def prompt(max_tokens: int = 64) -> Prompt:
    return engine_prompt(max_tokens=max_tokens)


async def collect(tier: OpenAITier, p: Prompt) -> list[TextDelta]:
    return [delta async for delta in tier.stream(p)]


async def test_streams_text_finish_and_usage(tier: OpenAITier, fake: ScriptedOpenAI) -> None:
    fake.enqueue(Script(tokens=["Punched", " cards", " [1]"], usage=(50, 3)))
    p = prompt()
    deltas = await collect(tier, p)

    assert "".join(d.text for d in deltas) == "Punched cards [1]"
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert [d.usage.prompt_tokens for d in deltas if d.usage] == [50]
    sent = fake.requests[0]
    assert sent["model"] == "scripted" and sent["messages"] == p.messages
    assert sent["max_tokens"] == p.max_tokens and sent["temperature"] == 0.2


@pytest.mark.parametrize(
    ("script", "reason", "retry_after"),
    [
        (Script(status=429, retry_after=7), "status_429", 7.0),
        (Script(status=429), "status_429", None),
        (Script(status=503, retry_after=3), "status_5xx", 3.0),
        (Script(status=502), "status_5xx", None),
        (Script(status=401), "status_4xx", None),
        (Script(error_as_first_chunk=True), "stream_error", None),
    ],
)
async def test_errors_map_to_tier_errors(
    tier: OpenAITier, fake: ScriptedOpenAI, script: Script, reason: str, retry_after: float | None
) -> None:
    fake.enqueue(script)
    with pytest.raises(TierError) as caught:
        await collect(tier, prompt())
    assert caught.value.reason == reason
    assert caught.value.retry_after == retry_after
    assert len(fake.requests) == 1  # max_retries=0: the SDK never retries behind the cascade's back


async def test_dropped_connection_is_a_connect_error(tier: OpenAITier, fake: ScriptedOpenAI) -> None:
    fake.enqueue(Script(tokens=["a", "b", "c"], drop_after=1))
    got: list[str] = []
    with pytest.raises(TierError) as caught:
        async for delta in tier.stream(prompt()):
            got.append(delta.text)
    assert caught.value.reason == "connect" and "a" in got


def test_retry_after_parsing() -> None:
    assert parse_retry_after({"retry-after": "12"}) == 12
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0) == 10
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server, serving the bundled SmolLM2 on a free port."""
    port = _free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path())]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2"]
    command += ["--verbose", "false"]
    # A file, not a pipe: model loading logs would fill a pipe nobody reads and block the server.
    log = (tmp_path_factory.mktemp("llama-server") / "server.log").open("w+b")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"llama_cpp.server exited: {log.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not become ready in 60 s")
            time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.mark.slow
async def test_against_llama_cpp_server(llama_server: str) -> None:
    settings = OpenAITierSettings(name="llama-server", base_url=llama_server, model="smollm2", max_tokens=16)
    tier = OpenAITier(settings)
    try:
        deltas = await collect(tier, prompt(max_tokens=16))
        # Through the cascade too: this server sends no usage chunk, so usage is counted locally.
        stream = await Cascade([tier], CircuitSettings()).start(lambda t: prompt(max_tokens=16))
        streamed = "".join([text async for text in stream])
    finally:
        await tier.aclose()
    assert "".join(d.text for d in deltas).strip()
    assert [d.finish_reason for d in deltas if d.finish_reason][-1] in ("stop", "length")
    assert streamed.strip() and stream.tier == "llama-server"
    assert stream.finish_reason in ("stop", "length")
    usage = await stream.usage()
    assert 0 < usage.completion_tokens <= 40 and usage.prompt_tokens > 50
