"""The stream watchdog's rules (running.py): one cancel scope per turn, deadlines read from the turn's clocks."""

from __future__ import annotations

import anyio

from backend.stream.running import SEND_TIMEOUT, STALLED, STOPPED, RunningTurns, TurnControl


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def turn(clock: Clock, *, idle: float | None = 2.0) -> TurnControl:
    control = TurnControl(clock=clock)
    control.idle_seconds = idle
    return control


def test_a_reader_that_stops_reading_is_timed_out_and_a_slow_one_is_not() -> None:
    clock = Clock()
    running = RunningTurns(send_timeout_seconds=5.0)
    control = turn(clock)
    running.register("a", control)
    control.sending, control.since = True, clock.now
    clock.now += 4.9
    assert running.check(clock.now) == 0 and control.reason is None
    clock.now += 0.2
    assert running.check(clock.now) == 1 and control.reason == SEND_TIMEOUT


def test_a_silent_tier_is_stalled_only_past_its_idle_timeout_and_only_once_it_answered() -> None:
    clock = Clock()
    running = RunningTurns()
    waiting_first_token = turn(clock, idle=None)  # the cascade's first-token timeout rules until then
    answering = turn(clock, idle=2.0)
    running.register("first", waiting_first_token)
    running.register("answering", answering)
    clock.now += 1.9
    assert running.check(clock.now) == 0
    clock.now += 0.2
    assert running.check(clock.now) == 1
    assert answering.reason == STALLED and waiting_first_token.reason is None


def test_writing_is_not_silence_and_the_first_reason_is_the_one_reported() -> None:
    clock = Clock()
    running = RunningTurns(send_timeout_seconds=30.0)
    control = turn(clock, idle=1.0)
    running.register("a", control)
    control.sending, control.since = True, clock.now
    clock.now += 10  # a slow write, far past the idle timeout but within the send timeout
    assert running.check(clock.now) == 0
    assert running.stop("a") and control.reason == STOPPED
    control.cancel(STALLED)
    assert control.reason == STOPPED
    assert not running.stop("unknown")


async def test_cancel_ends_the_turns_one_scope_wherever_it_waits() -> None:
    control = TurnControl()
    running = RunningTurns()
    running.register("a", control)
    with anyio.CancelScope() as scope:
        control.scope = scope
        assert running.stop_all(reason="shutdown") == 1
        await anyio.sleep(5)
    assert scope.cancelled_caught and control.reason == "shutdown"
    running.unregister("a", control)
    assert len(running) == 0
