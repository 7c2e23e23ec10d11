"""What the two push relays share (relay.py `TokenRelay`, native_relay.py `NativeRelay`): the turn's one future,
the write that has to wait for the visitor's socket, and the end that waits for that write.

A piece's write normally returns at once, inside the upstream socket's callback. When the visitor's socket is full
it finishes in a task (`_write_later`) with `control.sending` set (the watchdog's send deadline runs) and the
upstream left unread meanwhile (TCP pushes back on it), so pieces are never reordered or dropped. An answer that
ends while such a write waits ends once it is written (`_ending`): its last piece is part of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import anyio

from backend.chat.cascade import TierStream
from backend.stream.outcome import TurnOutcome
from backend.stream.running import TurnControl

# The coalescing rule, defined once for every relay (relay.py's pull and push paths, and the C tap, which is given
# `dense_gap(window)` and compares with it): a piece written less than DENSE_WINDOWS windows after the one before
# it finds pieces coming dense, and the upstream is left unread for one window so what arrives meanwhile leaves in
# one read and one write. At a steady 20 tokens/s (50 ms apart) and the default 10 ms window nothing waits.
DENSE_WINDOWS = 2


def dense_gap(window: float) -> float:
    """The gap between two writes below which pieces come dense."""
    return DENSE_WINDOWS * window


def is_dense(previous: float, now: float, window: float) -> bool:
    """Whether a write at `now`, after one at `previous`, finds pieces coming dense."""
    return now - previous < dense_gap(window)


class RelayCore:
    __slots__ = (
        "_control",
        "_done",
        "_ending",
        "_last",
        "_loop",
        "_outcome",
        "_resume_timer",
        "_stream",
        "_window",
        "_writing",
    )

    def __init__(
        self,
        *,
        stream: TierStream,
        outcome: TurnOutcome,
        control: TurnControl,
        window: float,
        last_write: float,
    ) -> None:
        self._stream = stream
        self._outcome = outcome
        self._control = control
        self._window = window
        self._last = last_write
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._writing: asyncio.Future[None] | None = None  # a write waiting for the visitor's socket
        self._ending = False  # the answer ended while a write waited: end once it is written
        self._resume_timer: asyncio.TimerHandle | None = None  # coalescing: when to read the upstream again

    # -- what each relay supplies ----------------------------------------------------------------------------------

    def _hold_upstream(self) -> None:
        raise NotImplementedError

    def _release_upstream(self) -> None:
        """Read the upstream again (and whatever it kept meanwhile)."""
        raise NotImplementedError

    def _count_written(self, text: str) -> None:
        """A waiting write of `text` finished: it is part of the answer now (INV-2)."""
        raise NotImplementedError

    def _go_on(self) -> None:
        """After a waiting write, the answer goes on: read the upstream again."""
        raise NotImplementedError

    def _settle(self, error: BaseException | None) -> None:
        """Finish the turn's future: the answer is complete (None) or broke off with `error`."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------------------------

    def _hold_for_window(self, now: float) -> None:
        """Pieces come dense: leave the upstream unread for one window, so what arrives meanwhile goes out in one
        read and one write."""
        self._hold_upstream()
        self._resume_timer = self._loop.call_at(now + self._window, self._resume)

    def _resume(self) -> None:
        self._resume_timer = None
        if not self._done.done():
            self._release_upstream()

    def _write_later(self, write: Awaitable[None], text: str) -> None:
        control = self._control
        control.sending = True
        control.since = control.now()
        self._hold_upstream()
        self._writing = asyncio.ensure_future(self._finish_write(write, text))

    async def _finish_write(self, write: Awaitable[None], text: str) -> None:
        try:
            await write
        except asyncio.CancelledError:  # by `_cancel_pending`: the turn is over
            return
        except BaseException as exc:  # the connection broke without a log to keep the rest
            self._fail(exc)
            return
        self._writing = None
        self._control.sending = False
        self._count_written(text)
        if self._ending:
            self._end(None)
        else:
            self._go_on()

    def _end(self, error: BaseException | None) -> None:
        """The tier's answer ended (None: complete; else how it broke off)."""
        if self._done.done():
            return
        if error is None and self._writing is not None:  # the last piece is still being written
            self._ending = True
            return
        self._settle(error)

    def _fail(self, exc: BaseException) -> None:
        """The write to the visitor broke: the turn ends with it as it is."""
        if not self._done.done():
            self._done.set_exception(exc)

    async def _cancel_pending(self) -> None:
        """No resume timer left, and no waiting write (cancelled, and awaited: it is over when this returns)."""
        if self._resume_timer is not None:
            self._resume_timer.cancel()
            self._resume_timer = None
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.gather(writing, return_exceptions=True)
