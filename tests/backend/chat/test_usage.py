"""A turn's token usage: the upstream's figures, else counted with tiktoken at the turn's end, never on the event
loop for a long answer."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from backend.chat.cascade import Cascade
from backend.chat.tiers.openai_tier import OpenAITier
from backend.chat.tokens import count_tokens
from backend.errors import LorechatError
from backend.settings import CircuitSettings, OpenAITierSettings
from backend.stream.outcome import TurnOutcome
from tests.backend.chat.helpers import engine_prompt
from tests.fakes import Script, ScriptedOpenAI


async def test_a_long_interrupted_answer_is_counted_without_stalling_the_event_loop() -> None:
    # Found by the frozen-reader test (L3): a broken upstream's megabytes of answer, counted by tiktoken on the
    # event loop at the turn's end, stalled every open stream for ~0.6 s.
    big = ["x" * 16_000 for _ in range(120)]  # ~2 MB without the upstream's usage figures (it drops)
    with ScriptedOpenAI(default=Script(tokens=big, drop_after=len(big) - 1)) as runaway:
        tier = OpenAITier(
            OpenAITierSettings(
                name=f"runaway-{uuid.uuid4().hex[:8]}", base_url=runaway.base_url, model="scripted", max_answer_chars=0
            )
        )
        try:
            stream = await Cascade([tier], CircuitSettings()).start(lambda _: engine_prompt(max_tokens=64))
            with pytest.raises(LorechatError):
                async for _ in stream:
                    pass
        finally:
            await tier.aclose()
    outcome = TurnOutcome()
    outcome.attach(stream)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    await outcome.measure_usage()
    took = time.monotonic() - started
    ticker.cancel()
    assert outcome.usage == {
        "prompt_tokens": stream.prompt.prompt_tokens, "completion_tokens": count_tokens(stream.text)
    }  # fmt: skip
    assert outcome.usage["completion_tokens"] > 100_000
    assert ticks >= took / 0.005 / 4  # the loop went on while tiktoken counted (inline it ticks 0 times)
