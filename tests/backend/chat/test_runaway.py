"""A runaway upstream, one that ignores max_tokens and goes on streaming, is cut off past its tier's character cap
(RUNAWAY_CHARS_PER_TOKEN characters for each token of max_tokens by default): when its answer is iterated or held
whole for the claim check, and over HTTP on each relay (C and Python), where the answer so far is sent, stored and
ended with finish_reason "length". Each time the upstream is let go at the cap, not read to its end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.chat.cascade import RUNAWAY_CHARS_PER_TOKEN, Cascade
from backend.chat.tiers.openai_tier import OpenAITier
from backend.settings import CircuitSettings, OpenAITierSettings
from tests.backend.api.harness import TEST_SERVER, Backend, LiveApp, extractive_tier, live_app
from tests.backend.api.streams import assert_turn_stored, post_chat
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


# ---- over HTTP, on each relay


@pytest.fixture(scope="module", params=["native", "python"])
def capped_app(
    request: pytest.FixtureRequest,
    backend: Backend,
    fake: ScriptedOpenAI,
    api_index: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveApp]:
    """The scripted upstream with the default cap, relayed in C or in Python."""
    capped = OpenAITierSettings(
        name="upstream",
        base_url=fake.base_url,
        model="scripted",
        max_tokens=MAX_TOKENS,
        first_token_timeout_seconds=5,
        idle_timeout_seconds=2,
    )
    with live_app(
        template=api_index,
        workdir=tmp_path_factory.mktemp(f"runaway-{request.param}-{backend.name}"),
        backend=backend,
        tiers=[capped, extractive_tier()],
        server=TEST_SERVER.model_copy(update={"native_token_path": request.param == "native"}),
    ) as app:
        yield app


async def test_a_runaway_answer_is_cut_off_sent_and_stored_with_finish_reason_length(
    capped_app: LiveApp, upstream: ScriptedOpenAI
) -> None:
    question = "What does salt do to the crumb?"
    upstream.enqueue(Script(tokens=[" Salt [1]", *WORDS], token_interval=0.001))
    async with capped_app.client() as client:
        reply = await post_chat(client, {"query": question})
    stream = reply.stream
    assert reply.status == 200 and stream.terminal.name == "done", reply.raw[-300:]
    assert stream.done["finish_reason"] == "length"
    full = "".join([" Salt [1]", *WORDS])
    assert stream.text == full[: RUNAWAY_CHARS_PER_TOKEN * MAX_TOKENS]  # cut at the cap, however pieces were read
    async with capped_app.db() as db:
        await assert_turn_stored(db, reply, question=question)
    assert upstream.wait_streams_closed(5)  # the upstream was let go at once, not read to its end
