"""The in-process `llama_cpp` tier with the real bundled SmolLM2 model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from backend.chat.cascade import Cascade
from backend.chat.prompt import Prompt
from backend.chat.tiers.extractive import ExtractiveTier
from backend.chat.tiers.llama_cpp_tier import LlamaCppTier, default_model_path
from backend.settings import CircuitSettings, TierSettings
from tests.backend.chat.helpers import engine_prompt

pytestmark = pytest.mark.slow


@pytest.fixture
async def tier() -> AsyncIterator[LlamaCppTier]:
    made = LlamaCppTier(TierSettings(name="local", kind="llama_cpp", max_tokens=8, first_token_timeout_seconds=30))
    await made.warm()
    yield made
    await made.aclose()


def prompt(max_tokens: int = 8) -> Prompt:
    return engine_prompt(max_tokens=max_tokens)


def test_default_model_is_the_bundled_smollm2() -> None:
    path = default_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()


async def test_streams_a_few_tokens_with_usage(tier: LlamaCppTier) -> None:
    deltas = [delta async for delta in tier.stream(prompt(max_tokens=8))]
    text = "".join(d.text for d in deltas)
    assert text.strip()
    assert [d.finish_reason for d in deltas if d.finish_reason] in (["length"], ["stop"])
    usage = [d.usage for d in deltas if d.usage]
    assert usage and 0 < usage[0].completion_tokens <= 8 and usage[0].prompt_tokens > 50


async def test_closing_stops_generation_and_frees_the_model(tier: LlamaCppTier) -> None:
    stream = tier.stream(prompt(max_tokens=400))
    first = await anext(stream)
    started = time.monotonic()
    await stream.aclose()
    # The next generation gets the model once the worker noticed the stop (one token later); a lock
    # never released would hang here until the timeout.
    again = [delta async for delta in tier.stream(prompt(max_tokens=4))]
    assert time.monotonic() - started < 15
    assert first.text is not None and "".join(d.text for d in again).strip()


async def test_waiting_for_the_model_counts_toward_the_first_token_timeout(tier: LlamaCppTier) -> None:
    busy = tier.stream(prompt(max_tokens=400))
    await anext(busy)  # holds the model: one generation at a time
    tier.settings = tier.settings.model_copy(update={"first_token_timeout_seconds": 0.3})
    fallback = ExtractiveTier(TierSettings(name="extractive", kind="extractive"))
    try:
        stream = await Cascade([tier, fallback], CircuitSettings()).start(lambda t: prompt())
        assert stream.fallbacks == [("local", "first_token_timeout")]
        assert stream.tier == "extractive"
    finally:
        await busy.aclose()
    # Once the busy worker stopped, the model is free again for a patient caller.
    tier.settings = tier.settings.model_copy(update={"first_token_timeout_seconds": 10})
    stream = await asyncio.wait_for(Cascade([tier], CircuitSettings()).start(lambda t: prompt()), 10)
    assert stream.tier == "local"
    await stream.aclose()
