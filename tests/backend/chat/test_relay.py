"""The token relay's rules (relay.py), each against a stream that pushes on command and a sink whose socket can be
made full: only written text counts as sent, a full socket holds the upstream and sets the send clock, dense
pieces hold it for one window, a cancelled turn writes nothing more."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest

from backend.chat.relay import TokenRelay
from backend.errors import ErrorCode, LorechatError
from backend.stream.running import STOPPED, TurnControl


class PushingStream:
    """TierStream's push side: the test calls `text` and `end` as the upstream socket's callback would."""

    def __init__(self) -> None:
        self.held = False
        self._on_text: Callable[[str], None] | None = None
        self._on_end: Callable[[LorechatError | None], None] | None = None

    def push(self, on_text: Callable[[str], None], on_end: Callable[[LorechatError | None], None]) -> bool:
        self._on_text, self._on_end = on_text, on_end
        return True

    def hold(self) -> None:
        self.held = True

    def release(self) -> None:
        self.held = False

    def text(self, piece: str) -> None:
        assert self._on_text is not None and not self.held, "pushed while held"
        self._on_text(piece)

    def end(self, error: LorechatError | None = None) -> None:
        assert self._on_end is not None
        self._on_end(error)


class Sink:
    def __init__(self) -> None:
        self.written: list[str] = []
        self.full: asyncio.Future[None] | None = None  # set: the next write waits on it

    def send_text_now(self, text: str) -> Awaitable[None] | None:
        if self.full is None:
            self.written.append(text)
            return None
        waiting = self.full

        async def rest() -> None:
            await waiting
            self.written.append(text)

        return rest()


class Outcome:
    def __init__(self) -> None:
        self.sent_pieces: list[str] = []

    def sent(self, text: str) -> None:
        self.sent_pieces.append(text)


def relay(window: float = 0.0) -> tuple[TokenRelay, PushingStream, Sink, Outcome, TurnControl]:
    stream, sink, outcome, control = PushingStream(), Sink(), Outcome(), TurnControl()
    made = TokenRelay(
        stream=cast(Any, stream), sink=sink, outcome=cast(Any, outcome), control=control, window=window,
        last_write=control.now() - 1,
    )  # fmt: skip
    return made, stream, sink, outcome, control


async def test_a_full_socket_holds_the_upstream_until_the_write_ends_and_only_then_counts_it_sent() -> None:
    made, stream, sink, outcome, control = relay()
    running = asyncio.ensure_future(made.run())
    await asyncio.sleep(0)
    stream.text("Salt")
    assert sink.written == outcome.sent_pieces == ["Salt"] and not control.sending
    sink.full = asyncio.get_running_loop().create_future()
    stream.text(" tightens")
    assert stream.held and control.sending  # the send deadline runs; the upstream waits
    assert outcome.sent_pieces == ["Salt"]
    sink.full.set_result(None)
    sink.full = None
    await asyncio.sleep(0.01)
    assert sink.written == outcome.sent_pieces == ["Salt", " tightens"]
    assert not stream.held and not control.sending
    stream.text(" gluten")
    stream.end()
    assert await running is True
    assert outcome.sent_pieces == ["Salt", " tightens", " gluten"]


async def test_dense_pieces_hold_the_upstream_for_one_window() -> None:
    made, stream, sink, _, _ = relay(window=0.05)
    running = asyncio.ensure_future(made.run())
    await asyncio.sleep(0)
    stream.text("a")  # the last write was a second ago: not dense
    assert not stream.held
    stream.text("b")  # right after: dense, so the next pieces gather for one window
    assert stream.held
    await asyncio.sleep(0.08)
    assert not stream.held
    stream.end()
    assert await running is True and sink.written == ["a", "b"]


async def test_a_tier_that_breaks_off_ends_the_relay_with_its_error() -> None:
    made, stream, _, outcome, _ = relay()
    running = asyncio.ensure_future(made.run())
    await asyncio.sleep(0)
    stream.text("Salt")
    stream.end(LorechatError(ErrorCode.upstream_interrupted, "interrupted"))
    with pytest.raises(LorechatError) as raised:
        await running
    assert raised.value.code is ErrorCode.upstream_interrupted and outcome.sent_pieces == ["Salt"]


async def test_a_turn_cancelled_while_its_write_waits_writes_nothing_more() -> None:
    made, stream, sink, outcome, control = relay()
    running = asyncio.ensure_future(made.run())
    await asyncio.sleep(0)
    sink.full = asyncio.get_running_loop().create_future()
    stream.text("Salt")
    control.cancel(STOPPED)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert sink.written == outcome.sent_pieces == [] and stream.held
    assert not sink.full.done() or sink.full.cancelled()


async def test_once_the_turn_is_being_cancelled_a_pushed_piece_is_not_written() -> None:
    made, stream, sink, outcome, control = relay()
    running = asyncio.ensure_future(made.run())
    await asyncio.sleep(0)
    control.cancel(STOPPED)  # its scope's cancellation reaches the task at the next loop turn
    stream.text("late")
    assert sink.written == outcome.sent_pieces == [] and stream.held
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
