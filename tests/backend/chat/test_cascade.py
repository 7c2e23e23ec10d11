"""The tier cascade against real HTTP upstreams (scripted OpenAI-compatible servers): F7-F11, INV-5, D2."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from backend.chat.cascade import Cascade, TierStream
from backend.chat.prompt import Prompt, build_prompt
from backend.chat.tiers.base import Tier
from backend.chat.tiers.extractive import ExtractiveTier
from backend.chat.tiers.openai_tier import OpenAITier
from backend.errors import ErrorCode, LorechatError
from backend.metrics import REGISTRY
from backend.settings import CircuitSettings, ExtractiveTierSettings, OpenAITierSettings
from backend.stream.running import STALLED, RunningTurns, TurnControl
from tests.backend.chat.helpers import ADA, hit
from tests.fakes import Script, ScriptedOpenAI

TOKENS = ["The", " engine", " reads", " cards", " [1]", "."]
SOURCES = [hit(1, "The analytical engine reads punched cards.")]


@pytest.fixture
def primary() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI(default=Script(tokens=TOKENS)) as fake:
        yield fake


@pytest.fixture
def secondary() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI(default=Script(tokens=["Backup", " answer", " [1]"])) as fake:
        yield fake


def openai_tier(
    fake: ScriptedOpenAI, name: str, *, first: float = 1.0, idle: float = 1.0, hold: bool = False
) -> OpenAITier:
    # Unique names: the metrics registry is process-wide.
    return OpenAITier(
        OpenAITierSettings(
            name=f"{name}-{uuid.uuid4().hex[:8]}",
            base_url=fake.base_url,
            model="scripted",
            first_token_timeout_seconds=first,
            idle_timeout_seconds=idle,
            hold_until_supported=hold,
        )
    )


def extractive() -> Tier:
    return ExtractiveTier(
        ExtractiveTierSettings(
            name=f"extractive-{uuid.uuid4().hex[:8]}",
        )
    )


def build(tier: Tier) -> Prompt:
    return build_prompt(
        question="How does the engine read programs?",
        sources=SOURCES,
        history=[],
        creator=ADA,
        personality_weight=0.0,
        context_window=tier.settings.context_window,
        max_tokens=tier.settings.max_tokens,
    )


@pytest.fixture
async def tiers_to_close() -> AsyncIterator[list[Tier]]:
    made: list[Tier] = []
    yield made
    for tier in made:
        await tier.aclose()


def cascade_of(tiers: list[Tier], made: list[Tier], **circuit: float) -> Cascade:
    made.extend(tiers)
    return Cascade(tiers, CircuitSettings(**circuit))


def fallbacks(tier: str, reason: str) -> float:
    return REGISTRY.get_sample_value("lorechat_tier_fallbacks_total", {"tier": tier, "reason": reason}) or 0.0


async def drain(stream: TierStream) -> str:
    return "".join([text async for text in stream])


async def test_first_tier_answers_with_upstream_usage(primary, tiers_to_close) -> None:
    primary.enqueue(Script(tokens=TOKENS, usage=(321, 6)))
    tier = openai_tier(primary, "primary")
    stream = await cascade_of([tier, extractive()], tiers_to_close).start(build)

    assert stream.tier == tier.name and stream.kind == "openai"
    assert await drain(stream) == "".join(TOKENS)
    assert stream.finish_reason == "stop"
    usage = await stream.usage()
    assert (usage.prompt_tokens, usage.completion_tokens) == (321, 6)
    assert stream.prompt.sources == SOURCES and stream.fallbacks == []
    body = primary.requests[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"] == stream.prompt.messages and body["max_tokens"] == stream.prompt.max_tokens


async def test_f7_timeout_before_first_token_falls_back(primary, secondary, tiers_to_close) -> None:
    primary.enqueue(Script(tokens=TOKENS, first_token_delay=5))
    first, second = openai_tier(primary, "slow", first=0.3), openai_tier(secondary, "backup")
    started = time.monotonic()
    stream = await cascade_of([first, second], tiers_to_close).start(build)

    assert time.monotonic() - started < 2
    assert stream.tier == second.name
    assert stream.fallbacks == [(first.name, "first_token_timeout")]
    assert await drain(stream) == "Backup answer [1]"  # tokens of tier 2 only
    assert fallbacks(first.name, "first_token_timeout") == 1
    assert primary.wait_streams_closed(2)  # the abandoned attempt was closed upstream
    assert len(primary.requests) == len(secondary.requests) == 1  # INV-5


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        (Script(status=500), "status_5xx"),
        (Script(status=503, retry_after=120), "status_5xx"),
        (Script(status=429, retry_after=90), "status_429"),
        (Script(error_as_first_chunk=True), "stream_error"),
    ],
)
async def test_f8_upstream_errors_fall_back_and_open_the_circuit(
    primary, secondary, tiers_to_close, script: Script, reason: str
) -> None:
    primary.enqueue(script)
    first, second = openai_tier(primary, "flaky"), openai_tier(secondary, "backup")
    cascade = cascade_of([first, second], tiers_to_close, failure_threshold=1, cooldown_seconds=30)

    stream = await cascade.start(build)
    assert stream.tier == second.name and stream.fallbacks == [(first.name, reason)]
    assert await drain(stream) == "Backup answer [1]"
    assert REGISTRY.get_sample_value("lorechat_circuit_open", {"tier": first.name}) == 1
    expected_wait = max(30, script.retry_after or 0)
    assert expected_wait - 2 < cascade.breakers[first.name].retry_in() <= expected_wait  # Retry-After honoured

    # The next turn skips the open tier without calling it.
    again = await cascade.start(build)
    assert again.tier == second.name and again.fallbacks == [(first.name, "circuit_open")]
    await again.aclose()
    assert len(primary.requests) == 1 and len(secondary.requests) == 2


async def test_429_opens_the_circuit_even_below_the_failure_threshold(primary, secondary, tiers_to_close) -> None:
    primary.enqueue(Script(status=429))
    first, second = openai_tier(primary, "throttled"), openai_tier(secondary, "backup")
    cascade = cascade_of([first, second], tiers_to_close, failure_threshold=5, cooldown_seconds=30)
    await (await cascade.start(build)).aclose()
    assert cascade.breakers[first.name].retry_in() is not None


async def test_circuit_half_opens_after_the_cool_down(primary, tiers_to_close) -> None:
    now = [0.0]
    primary.enqueue(Script(status=500))
    # A roomy first-token timeout: this is about the circuit, and a trial answer slower than 1 s on a loaded CI
    # machine fell back to the extractive tier once.
    first, fallback = openai_tier(primary, "recovering", first=5.0), extractive()
    tiers_to_close.extend([first, fallback])
    cascade = Cascade(
        [first, fallback], CircuitSettings(failure_threshold=1, cooldown_seconds=10), clock=lambda: now[0]
    )

    assert (await cascade.start(build)).tier == fallback.name
    now[0] = 10.0
    stream = await cascade.start(build)  # the trial call goes through and succeeds
    assert stream.tier == first.name
    await stream.aclose()
    assert REGISTRY.get_sample_value("lorechat_circuit_open", {"tier": first.name}) == 0


async def test_f9_drop_after_first_token_is_an_error_not_a_switch(primary, secondary, tiers_to_close) -> None:
    primary.enqueue(Script(tokens=TOKENS, drop_after=2))
    first, second = openai_tier(primary, "dropper"), openai_tier(secondary, "backup")
    stream = await cascade_of([first, second], tiers_to_close).start(build)

    received = []
    with pytest.raises(LorechatError) as caught:
        async for text in stream:
            received.append(text)
    assert caught.value.code is ErrorCode.upstream_interrupted and caught.value.retryable
    # Exactly the text sent before the drop (pieces that arrived in one read travel as one).
    assert "".join(received) == stream.text == "".join(TOKENS[:2])
    assert secondary.requests == []  # no silent switch mid-answer


async def test_f10_stall_mid_stream_is_ended_by_the_watchdog_and_closes_upstream(primary, tiers_to_close) -> None:
    primary.enqueue(Script(tokens=TOKENS, stall_after=3))
    first = openai_tier(primary, "staller", idle=0.3)
    stream = await cascade_of([first, extractive()], tiers_to_close).start(build)
    # No timer per piece: the turn's clocks and the process watchdog (running.py) end a silent tier.
    running = RunningTurns()
    control = TurnControl()
    control.idle_seconds = stream.idle_seconds
    running.register("conversation", control)
    watchdog = asyncio.create_task(running.watch(interval=0.05))
    got: list[str] = []

    started = time.monotonic()
    with anyio.CancelScope() as scope:
        control.scope = scope
        async for text in stream:
            got.append(text)
            control.since = control.now()
    await stream.aclose()
    watchdog.cancel()
    assert scope.cancelled_caught and control.reason == STALLED
    assert stream.stalled().code is ErrorCode.upstream_stalled
    assert 0.25 < time.monotonic() - started < 2
    assert "".join(got) == "".join(TOKENS[:3])
    assert primary.wait_streams_closed(2) and primary.disconnects == 1


async def test_f11_all_tiers_fail(primary, secondary, tiers_to_close) -> None:
    primary.enqueue(Script(status=500))
    secondary.enqueue(Script(tokens=TOKENS, first_token_delay=5))
    first, second = openai_tier(primary, "down"), openai_tier(secondary, "slow", first=0.2)
    cascade = cascade_of([first, second], tiers_to_close)

    with pytest.raises(LorechatError) as caught:
        await cascade.start(build)
    assert caught.value.code is ErrorCode.all_tiers_failed and caught.value.status == 503
    assert len(primary.requests) == len(secondary.requests) == 1  # INV-5: one call per tier, no retries


async def test_all_circuits_open_reports_when_to_retry(primary, tiers_to_close) -> None:
    primary.enqueue(Script(status=429, retry_after=42))
    cascade = cascade_of([openai_tier(primary, "only")], tiers_to_close, cooldown_seconds=5)
    with pytest.raises(LorechatError) as caught:
        await cascade.start(build)
    assert caught.value.retry_after == 42


async def test_connect_error_falls_back(tiers_to_close) -> None:
    with ScriptedOpenAI() as gone:
        url = gone.base_url
    dead = OpenAITier(OpenAITierSettings(name=f"dead-{uuid.uuid4().hex[:8]}", base_url=url, model="m"))
    stream = await cascade_of([dead, extractive()], tiers_to_close).start(build)
    assert stream.fallbacks == [(dead.name, "connect")]
    assert "[1]" in await drain(stream)
    # The extractive tier reports no usage: it is counted with tiktoken.
    usage = await stream.usage()
    assert usage.completion_tokens > 0 and usage.prompt_tokens == stream.prompt.prompt_tokens


async def test_d2_closing_mid_answer_closes_the_upstream(primary, tiers_to_close) -> None:
    primary.enqueue(Script(tokens=TOKENS * 50, token_interval=0.02))
    stream = await cascade_of([openai_tier(primary, "long")], tiers_to_close).start(build)
    assert await anext(stream) == "The"
    assert await anext(stream) == " engine"
    await stream.aclose()

    assert primary.wait_streams_closed(1.0)
    assert primary.disconnects == 1
    assert [text async for text in stream] == []  # closed: nothing more


async def test_empty_first_answer_falls_back(primary, tiers_to_close) -> None:
    primary.enqueue(Script(tokens=[]))
    first, fallback = openai_tier(primary, "mute"), extractive()
    stream = await cascade_of([first, fallback], tiers_to_close).start(build)
    assert stream.tier == fallback.name and stream.fallbacks == [(first.name, "empty")]
    await stream.aclose()


async def test_d1_cancelled_while_waiting_for_the_first_token_closes_the_upstream(primary, tiers_to_close) -> None:
    primary.enqueue(Script(tokens=TOKENS, first_token_delay=30))
    cascade = cascade_of([openai_tier(primary, "abandoned", first=60)], tiers_to_close)
    task = asyncio.ensure_future(cascade.start(build))
    for _ in range(200):
        if primary.open_streams:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert primary.wait_streams_closed(1.0) and primary.disconnects == 1


async def test_a_failing_prompt_builder_does_not_wedge_a_half_open_circuit(primary, tiers_to_close) -> None:
    now = [0.0]
    primary.enqueue(Script(status=500))
    first = openai_tier(primary, "wedge")
    tiers_to_close.append(first)
    cascade = Cascade(
        [first, extractive()], CircuitSettings(failure_threshold=1, cooldown_seconds=1), clock=lambda: now[0]
    )
    await (await cascade.start(build)).aclose()
    now[0] = 5.0

    def broken(tier: Tier) -> Prompt:
        raise ValueError("bad prompt")

    with pytest.raises(ValueError):
        await cascade.start(broken)
    stream = await cascade.start(build)  # the trial slot was given back
    assert stream.tier == first.name
    await stream.aclose()


class Gate:
    """The claim check's verdict, scripted: records every answer it was asked about."""

    def __init__(self, verdict: bool) -> None:
        self.verdict = verdict
        self.asked: list[str] = []

    async def __call__(self, text: str) -> bool:
        self.asked.append(text)
        return self.verdict


async def test_a_held_tier_streams_its_whole_answer_once_the_check_accepts_it(primary, tiers_to_close) -> None:
    primary.enqueue(Script(tokens=TOKENS, token_interval=0.05, usage=(100, 6)))
    tier = openai_tier(primary, "held", hold=True)
    gate = Gate(True)
    stream = await cascade_of([tier, extractive()], tiers_to_close).start(build, supported=gate)

    assert gate.asked == ["".join(TOKENS)]  # asked once, about the whole answer
    assert stream.tier == tier.name and stream.fallbacks == []
    assert [text async for text in stream] == ["".join(TOKENS)]  # then sent at once
    assert stream.finish_reason == "stop" and (await stream.usage()).completion_tokens == 6
    assert primary.wait_streams_closed(1)


async def test_a_held_answer_the_check_rejects_goes_to_the_next_tier_before_any_token(
    primary, secondary, tiers_to_close
) -> None:
    first, second = openai_tier(primary, "invents", hold=True), openai_tier(secondary, "backup")
    gate = Gate(False)
    cascade = cascade_of([first, second], tiers_to_close, failure_threshold=1)
    stream = await cascade.start(build, supported=gate)

    assert stream.tier == second.name and stream.fallbacks == [(first.name, "unsupported")]
    assert await drain(stream) == "Backup answer [1]"  # nothing of the rejected answer
    assert gate.asked == ["".join(TOKENS)]  # the tier after it is not held
    assert fallbacks(first.name, "unsupported") == 1
    assert cascade.breakers[first.name].allow()  # an unsupported answer is not an outage


async def test_a_held_answer_must_arrive_whole_within_the_first_token_timeout(
    primary, secondary, tiers_to_close
) -> None:
    primary.enqueue(Script(tokens=TOKENS, token_interval=0.2))  # the first token is quick, the whole is not
    first = openai_tier(primary, "slow-whole", first=0.5, hold=True)
    second = openai_tier(secondary, "backup")
    gate = Gate(True)
    stream = await cascade_of([first, second], tiers_to_close).start(build, supported=gate)

    assert stream.tier == second.name and stream.fallbacks == [(first.name, "first_token_timeout")]
    assert gate.asked == []
    assert primary.wait_streams_closed(2)


async def test_without_a_gate_a_held_setting_streams_as_usual(primary, tiers_to_close) -> None:
    tier = openai_tier(primary, "held-ungated", hold=True)
    stream = await cascade_of([tier], tiers_to_close).start(build)
    assert await drain(stream) == "".join(TOKENS)


async def test_a_held_answer_whose_check_breaks_is_not_shown_unchecked(primary, secondary, tiers_to_close) -> None:
    async def broken(text: str) -> bool:
        raise RuntimeError("the embedding model is gone")

    first, second = openai_tier(primary, "held-broken-check", hold=True), openai_tier(secondary, "backup")
    stream = await cascade_of([first, second], tiers_to_close).start(build, supported=broken)
    assert stream.tier == second.name and stream.fallbacks == [(first.name, "check_failed")]
    assert await drain(stream) == "Backup answer [1]"
