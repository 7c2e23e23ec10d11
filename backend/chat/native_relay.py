"""The native token relay: after an openai tier's first token, its connection's tap (chat/_token_pipe.c) decodes
each upstream read, frames the token event, logs it for resumption and writes it to uvicorn's transport, in C,
inside the upstream socket's callback. No Python frame runs per token beyond the connection's `data_received`.

The Python relay (relay.py `TokenRelay`) cost ~45 µs of CPU a token at 1,000 streams, two thirds of it in ~20
Python frames (BENCHMARKS.md, "Streaming at 1,000 streams"). This one keeps that relay's guarantees, with Python called
back only at the events that are not a token (`_on_event`):
- only text whose write returned counts as sent (INV-2): the tap counts it after `transport.write` (or, for a
  frame that had to wait for the visitor's socket, `_finish_write` after the send);
- the turn's cancel scope ends it: the tap reads `control.reason` before each write and holds once it is set;
- the watchdog's clocks: the tap stamps `control.since` after each write; a full socket (uvicorn's flow control
  paused) hands the frame to Python, which sends it through uvicorn's `send` (it waits for the drain) with
  `sending` set and the upstream unread meanwhile;
- coalescing: the tap is given `relay_core.dense_gap(window)` and reports pieces closer than it (DENSE); the
  upstream is then left unread for one window;
- a visitor uvicorn knows is gone is written nothing, as uvicorn's own `send` does; a detached sink's tap writes
  to the log only.
Used when the sink writes to uvicorn's httptools protocol and the tier's body comes from our transport; anything
else goes through relay.py.
"""

from __future__ import annotations

from typing import Any

from backend.chat import _token_pipe as pipe
from backend.chat.cascade import TierStream
from backend.chat.relay_core import RelayCore, dense_gap
from backend.chat.tiers.sse_deltas import MAX_EVENT_BYTES, usage_from
from backend.metrics import TOKEN_PATHS
from backend.stream.event_stream import SseSink
from backend.stream.outcome import TurnOutcome
from backend.stream.running import TurnControl


class NativeRelay(RelayCore):
    __slots__ = ("_cycle", "_sink", "_source", "_tap")

    def __init__(
        self,
        *,
        stream: TierStream,
        sink: SseSink,
        outcome: TurnOutcome,
        control: TurnControl,
        window: float,
        last_write: float,
    ) -> None:
        super().__init__(stream=stream, outcome=outcome, control=control, window=window, last_write=last_write)
        self._sink = sink
        self._source: Any = None  # the tier's stream (openai_tier.OpenAIStream)
        self._tap: Any = None
        self._cycle: Any = None

    def ready(self) -> bool:
        """Whether both ends can be piped natively (else: relay.py)."""
        self._source = self._stream.pipe_source()
        self._cycle = self._sink.pipe_target()
        if self._source is None or self._cycle is None:
            return False
        self._tap = self._source.pipe_tap()
        return self._tap is not None

    async def run(self) -> None:
        """Relay the rest of the answer (after `ready()`). Raises upstream_interrupted when the tier broke off,
        and whatever the write of a waiting frame raised (the connection broke without a log to keep the rest)."""
        tap, source, control = self._tap, self._source, self._control
        partial, data_lines = source.hand_off()
        next_id, log = self._sink.lend(tap)
        tap.pipe(
            partial=partial,
            data_lines=data_lines,
            transport=self._cycle.transport,
            cycle=self._cycle,
            control=control,
            clock=control.clock,
            log=log,
            on_event=self._on_event,
            next_id=next_id,
            dense_gap=dense_gap(self._window),
            last=self._last,
            max_event=MAX_EVENT_BYTES,
            max_chars=self._stream.chars_left,
        )
        TOKEN_PATHS.labels("native").inc()
        source.listen(self._on_wake)
        try:
            self._on_wake()  # what arrived since the first token
            await self._done
        finally:
            await self._stop()

    def _on_event(self, kind: int, a: Any, b: Any) -> None:
        """The tap's call for anything that is not a token (it holds itself first where it stops writing)."""
        try:
            if kind == pipe.META:
                self._stream.absorb(a, usage_from(b) if b is not None else None)
            elif kind == pipe.DONE:
                self._end(None)
            elif kind == pipe.ERROR:
                self._end(self._source.stream_error(a))
            elif kind == pipe.CANCELLED:
                self._source.hold()
            elif kind == pipe.DENSE:
                self._hold_for_window(self._control.now())
            elif kind == pipe.FULL:
                self._write_later(self._sink.write_frame(a), b)
            elif kind == pipe.LIMIT:  # a runaway upstream: the answer is cut off here
                self._source.hold()
                self._stream.cut()
                self._end(None)
        except Exception as exc:  # never into the parser: the turn ends with it
            self._end(exc)

    def _on_wake(self) -> None:
        """Bytes kept while the tap held, the body's end, or a broken connection."""
        tap, source = self._tap, self._source
        try:
            while not tap.held and not self._done.done():
                data = source.read_kept()
                if data is None:
                    self._end(None)
                    return
                if not data:
                    return
                tap.on_body(data)
        except Exception as exc:
            self._end(exc)

    # -- RelayCore -------------------------------------------------------------------------------------------------

    def _hold_upstream(self) -> None:
        self._source.hold()

    def _release_upstream(self) -> None:
        self._tap.release()
        self._source.release()
        self._on_wake()

    def _count_written(self, text: str) -> None:
        self._control.since = self._control.now()
        self._tap.add_sent(text)

    def _go_on(self) -> None:
        self._resume()

    def _settle(self, error: BaseException | None) -> None:
        failure = self._stream.ended(error)
        if failure is None:
            self._done.set_result(None)
        else:
            self._done.set_exception(failure)

    async def _stop(self) -> None:
        """The answer ended or the turn is being cancelled: nothing more is written; what was, is counted."""
        tap, source = self._tap, self._source
        tap.stop()
        source.listen(None)
        if not self._done.done():  # cancelled from outside: leave the upstream unread until it is closed
            source.hold()
        await self._cancel_pending()
        text = tap.take_text()
        self._stream.piped(text)
        self._outcome.sent(text)
        self._sink.take_back(tap.next_id)
