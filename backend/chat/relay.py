"""The token relay: once a tier has answered, each upstream read is decoded and written to the visitor inside the
upstream socket's callback, with no task step, future, generator or coroutine frames per token.

Pulling a token (the turn's task woken by a future, resumed through every frame from uvicorn down to the socket
read, then suspended again) cost more CPU than decoding and writing it (BENCHMARKS.md, "Streaming at 1,000 streams").
Here the turn's task waits once, for the answer's end, while the socket's callback does the work: `TierStream.push`
hands each piece to `_on_text`, which writes it with the sink's inline send (`SseSink.send_text_now`).

What the pull loop (service.py `_generate`) guaranteed still holds:
- only text whose write returned counts as sent (INV-2: `outcome.sent` after the write);
- the turn's one cancel scope ends it (stop, shutdown, watchdog deadlines, the visitor leaving): the task's wait
  is cancelled, and from the moment a reason is set no further piece is written;
- the watchdog's clocks: `since` is stamped at every write (idle deadline, F10); a write that cannot finish at
  once (the visitor's socket is full) sets `sending` until it does (send deadline, L3), and meanwhile the
  upstream's socket is not read (TCP pushes back on the upstream; pieces are never reordered or dropped);
- coalescing (the rule is `relay_core.is_dense`, the C tap's too): while pieces come dense, the upstream's socket
  is left unread for one window, so what arrives meanwhile leaves in one read and one write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from backend.chat.cascade import TierStream
from backend.chat.relay_core import RelayCore, is_dense
from backend.errors import LorechatError
from backend.metrics import TOKEN_PATHS
from backend.stream.event_stream import SseSink
from backend.stream.events import EventSink
from backend.stream.outcome import TurnOutcome
from backend.stream.running import TurnControl

try:  # the native relay needs chat/_token_pipe.c built (`pip install` builds it)
    from backend.chat.native_relay import NativeRelay
except ImportError:
    NativeRelay = None  # type: ignore[assignment,misc]


def native_relay_built() -> bool:
    return NativeRelay is not None


async def relay_answer(
    *,
    stream: TierStream,
    sink: EventSink,
    outcome: TurnOutcome,
    control: TurnControl,
    window: float,
    native: bool = True,
) -> None:
    """The token loop, the service's hot path: the first piece is pulled and written; the rest are piped in C
    when both ends allow it (native_relay.py, with `native`), else pushed by the relay when the tier and the sink
    can (`TokenRelay`), else pulled the same way, one write per network read.

    No timer or scope per piece (the watchdog reads `control`'s clocks). While pieces come less than two coalescing
    windows apart, the loop waits one window before reading again (the relay: leaves the socket unread for one
    window), so what arrived meanwhile goes out in one write: fewer, larger writes only while tokens are dense; at
    a steady 20 tokens/s no piece waits. Raises upstream_interrupted when the tier breaks off (F9).
    """
    now = control.now
    last = now()
    first = True
    async for text in stream:
        control.sending = True
        control.since = now()
        await sink.send_text(text)
        outcome.sent(text)  # only what reached the sink is the answer (INV-2)
        control.sending = False
        previous, last = last, now()
        control.since = last
        if first:
            first = False
            if await _relayed(stream, sink, outcome, control, window, last, native=native):
                return
            TOKEN_PATHS.labels("pull").inc()
        if is_dense(previous, last, window):  # let the next pieces gather for one write
            await asyncio.sleep(window)


async def _relayed(
    stream: TierStream,
    sink: EventSink,
    outcome: TurnOutcome,
    control: TurnControl,
    window: float,
    last: float,
    *,
    native: bool,
) -> bool:
    """After the first piece: the rest piped in C, or pushed; False when neither can (pull them)."""
    if native and NativeRelay is not None and isinstance(sink, SseSink):  # the native relay writes only SSE
        piped = NativeRelay(stream=stream, sink=sink, outcome=outcome, control=control, window=window, last_write=last)
        if piped.ready():
            await piped.run()
            return True
    if not isinstance(sink, InlineSink):
        return False
    relay = TokenRelay(stream=stream, sink=sink, outcome=outcome, control=control, window=window, last_write=last)
    return await relay.run()


@runtime_checkable
class InlineSink(Protocol):
    def send_text_now(self, text: str) -> Awaitable[None] | None:
        """Write a token now; None when written, else an awaitable that finishes the write."""
        ...


class TokenRelay(RelayCore):
    __slots__ = ("_send_now",)

    def __init__(
        self,
        *,
        stream: TierStream,
        sink: InlineSink,
        outcome: TurnOutcome,
        control: TurnControl,
        window: float,
        last_write: float,
    ) -> None:
        super().__init__(stream=stream, outcome=outcome, control=control, window=window, last_write=last_write)
        self._send_now: Callable[[str], Awaitable[None] | None] = sink.send_text_now

    async def run(self) -> bool:
        """Relay the rest of the answer; False (nothing done) when the tier cannot push: iterate it instead.
        Returns once the answer is complete; raises upstream_interrupted when the tier broke off (F9), and
        whatever the write raised (the connection broke without a log to keep the rest)."""
        if not self._stream.push(self._on_text, self._on_end):
            return False
        TOKEN_PATHS.labels("push").inc()
        try:
            await self._done
        finally:
            await self._stop()
        return True

    def _on_text(self, text: str) -> None:
        if self._control.reason is not None:  # being cancelled: nothing more goes out
            self._stream.hold()
            return
        try:
            rest = self._send_now(text)
        except BaseException as exc:  # the socket broke and nothing keeps the rest
            self._fail(exc)
            return
        if rest is None:
            self._outcome.sent(text)
            self._written()
        else:  # the visitor's socket is full
            self._write_later(rest, text)

    def _written(self) -> bool:
        """Stamp the write; while pieces are dense, leave the upstream unread for one window (True if so)."""
        previous = self._last
        self._last = now = self._control.now()
        self._control.since = now
        if not is_dense(previous, now, self._window):
            return False
        self._hold_for_window(now)
        return True

    def _on_end(self, error: LorechatError | None) -> None:
        self._end(error)

    # -- RelayCore -------------------------------------------------------------------------------------------------

    def _hold_upstream(self) -> None:
        self._stream.hold()

    def _release_upstream(self) -> None:
        self._stream.release()

    def _count_written(self, text: str) -> None:
        self._outcome.sent(text)

    def _go_on(self) -> None:
        if not self._written():
            self._release_upstream()

    def _settle(self, error: BaseException | None) -> None:
        if error is None:
            self._done.set_result(None)
        else:
            self._done.set_exception(error)

    async def _stop(self) -> None:
        """The answer ended or the turn is being cancelled: nothing more is pushed or written."""
        if not self._done.done():  # cancelled from outside: the stream may still push
            self._stream.hold()
        await self._cancel_pending()
