"""The `llama_cpp` tier: the real bundled SmolLM2 in its own supervised process (llama-cpp-python's server)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.chat.cascade import Cascade
from backend.chat.prompt import Prompt
from backend.chat.tiers.extractive import ExtractiveTier
from backend.chat.tiers.llama_cpp_tier import LlamaCppTier, default_model_path
from backend.chat.tiers.model_process import ModelState
from backend.errors import LorechatError
from backend.settings import CircuitSettings, ExtractiveTierSettings, LlamaCppTierSettings, TierSettings
from tests.backend.chat.helpers import engine_prompt

pytestmark = pytest.mark.slow

READY_WITHIN = 120.0  # a cold model load plus the warm-up decodes on a busy 2-core machine


def local_settings(**changes: object) -> TierSettings:
    # A generous first-token target: these tests are about the process, not about this machine's speed.
    options: dict[str, object] = {"max_tokens": 8, "first_token_timeout_seconds": 30, "first_token_target_seconds": 60}
    options.update(changes)
    return LlamaCppTierSettings(name="local", **options)  # type: ignore[arg-type]


@pytest.fixture
async def tier() -> AsyncIterator[LlamaCppTier]:
    made = LlamaCppTier(local_settings())
    await made.warm(wait_seconds=READY_WITHIN)
    assert made.status == "ready", made.process.problem
    yield made
    await made.aclose()


def prompt(max_tokens: int = 8) -> Prompt:
    return engine_prompt(max_tokens=max_tokens)


def extractive() -> ExtractiveTier:
    return ExtractiveTier(
        ExtractiveTierSettings(
            name="extractive",
        )
    )


def test_default_model_is_the_bundled_smollm2() -> None:
    path = default_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()


async def test_model_runs_in_its_own_process_and_measures_its_speed(tier: LlamaCppTier) -> None:
    pid = tier.process.pid
    assert pid is not None and pid != os.getpid()
    speed = tier.process.speed
    assert speed is not None and speed.tokens_per_second > 1 and speed.model_tokens_per_cl100k > 0.5
    assert tier.prompt_budget is not None and tier.prompt_budget > 0


async def test_streams_a_few_tokens_with_usage(tier: LlamaCppTier) -> None:
    deltas = [delta async for delta in tier.stream(prompt(max_tokens=8))]
    assert "".join(d.text for d in deltas).strip()
    assert [d.finish_reason for d in deltas if d.finish_reason] in (["length"], ["stop"])


async def test_a_busy_model_is_skipped_at_once_not_waited_for(tier: LlamaCppTier) -> None:
    busy = tier.stream(prompt(max_tokens=400))
    await anext(busy)  # holds the model: one generation at a time
    try:
        stream = await Cascade([tier, extractive()], CircuitSettings()).start(lambda t: prompt())
        assert stream.fallbacks == [("local", "busy")] and stream.tier == "extractive"
        await stream.aclose()
    finally:
        await busy.aclose()
    stream = await Cascade([tier], CircuitSettings()).start(lambda t: prompt())
    assert stream.tier == "local"
    await stream.aclose()


async def test_prompt_that_cannot_be_read_in_time_skips_the_tier(tier: LlamaCppTier) -> None:
    tier.settings = tier.settings.model_copy(update={"first_token_target_seconds": 0.001})
    cascade = Cascade([tier, extractive()], CircuitSettings())
    stream = await cascade.start(lambda t: prompt())
    assert stream.fallbacks == [("local", "too_slow")] and stream.tier == "extractive"
    assert cascade.breakers["local"].failures == 0  # being slow for a prompt is not a failure of the tier
    await stream.aclose()


async def test_kill_9_mid_answer_ends_the_turn_retryably_and_the_model_comes_back(tier: LlamaCppTier) -> None:
    stream = await Cascade([tier, extractive()], CircuitSettings()).start(lambda t: prompt(max_tokens=400))
    assert stream.tier == "local"
    pid = tier.process.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(LorechatError) as raised:
        async for _ in stream:
            pass
    assert raised.value.code.value == "upstream_interrupted" and raised.value.retryable
    # Once the supervisor saw the exit, the cascade passes the restarting model over at once, without
    # waiting out a timeout (and without counting it against the tier's circuit breaker).
    for _ in range(100):
        if tier.status != "ready":
            break
        await asyncio.sleep(0.05)
    fallback = await Cascade([tier, extractive()], CircuitSettings()).start(lambda t: prompt())
    assert fallback.tier == "extractive" and fallback.fallbacks[0][1] in ("restarting", "starting")
    await fallback.aclose()
    assert await tier.process.wait_ready(READY_WITHIN), tier.process.problem
    assert tier.process.pid not in (None, pid) and tier.process.restarts == 1
    again = [delta async for delta in tier.stream(prompt(max_tokens=4))]
    assert "".join(d.text for d in again).strip()


async def test_hung_model_is_killed_and_restarted(tier: LlamaCppTier) -> None:
    pid = tier.process.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # a hang in native code: the process is alive but answers nothing
    tier.settings = tier.settings.model_copy(update={"first_token_timeout_seconds": 1.0})
    stream = await Cascade([tier, extractive()], CircuitSettings()).start(lambda t: prompt())
    assert stream.fallbacks == [("local", "first_token_timeout")] and stream.tier == "extractive"
    await stream.aclose()
    assert await tier.process.wait_ready(READY_WITHIN), tier.process.problem
    assert tier.process.pid != pid


async def test_broken_model_disables_the_tier_with_one_clear_reason(tmp_path: Path) -> None:
    garbage = tmp_path / "broken.gguf"
    garbage.write_bytes(b"GGUF" + os.urandom(4096))
    made = LlamaCppTier(local_settings(model_path=str(garbage)))
    try:
        await made.warm(wait_seconds=READY_WITHIN)
        assert made.process.state is ModelState.broken
        assert "exited while loading" in made.process.problem
        assert made.skip_reason(prompt()) == "unavailable"
        stream = await Cascade([made, extractive()], CircuitSettings()).start(lambda t: prompt())
        assert stream.fallbacks == [("local", "unavailable")] and stream.tier == "extractive"
        await stream.aclose()
    finally:
        await made.aclose()
