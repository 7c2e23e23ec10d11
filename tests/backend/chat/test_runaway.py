"""A runaway upstream (it ignores max_tokens) is cut off past its tier's character cap when its answer is iterated
or held whole for the claim check; the relays' cut is tests/backend/api/test_runaway.py's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from backend.chat.cascade import RUNAWAY_CHARS_PER_TOKEN, Cascade
from backend.chat.tiers.openai_tier import OpenAITier
from backend.settings import CircuitSettings, OpenAITierSettings
from tests.backend.chat.test_cascade import Gate, build
from tests.fakes import Script, ScriptedOpenAI

MAX_TOKENS = 16
WORDS = [f" word{i:03d}" for i in range(1_000)]  # 8,000 characters


@pytest.fixture
def runaway() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI(default=Script(tokens=WORDS, token_interval=0.0005)) as fake:
        yield fake


def tier(fake: ScriptedOpenAI, *, hold: bool = False, cap: int | None = None) -> OpenAITier:
    return OpenAITier(
        OpenAITierSettings(
            name=f"runaway-{uuid.uuid4().hex[:8]}",
            base_url=fake.base_url,
            model="scripted",
            max_tokens=MAX_TOKENS,
            first_token_timeout_seconds=5,
            hold_until_supported=hold,
            max_answer_chars=cap,
        )
    )


@pytest.mark.parametrize("hold", [False, True])
async def test_an_answer_past_its_cap_ends_there_with_finish_reason_length(runaway: ScriptedOpenAI, hold: bool) -> None:
    made = tier(runaway, hold=hold)
    try:
        stream = await Cascade([made], CircuitSettings()).start(build, supported=Gate(True) if hold else None)
        text = "".join([piece async for piece in stream])
    finally:
        await made.aclose()
    cap = RUNAWAY_CHARS_PER_TOKEN * MAX_TOKENS
    assert text == "".join(WORDS)[:cap]  # cut at the cap, however the pieces were read
    assert stream.finish_reason == "length"
    assert runaway.wait_streams_closed(5)  # let go at the cap, not read to the end


async def test_a_cap_of_zero_lets_an_answer_run_to_its_end(runaway: ScriptedOpenAI) -> None:
    made = tier(runaway, cap=0)
    try:
        stream = await Cascade([made], CircuitSettings()).start(build)
        assert "".join([piece async for piece in stream]) == "".join(WORDS)
    finally:
        await made.aclose()
    assert stream.finish_reason == "stop"
