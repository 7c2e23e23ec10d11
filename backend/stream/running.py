"""Turns generating right now: the stop endpoint and shutdown end them from another request, and one watchdog
per process enforces every stream's idle and send deadlines.

A turn has exactly one cancel scope, around its whole generation (`TurnControl.scope`), never one per token:
a per-piece scope or timer cost more CPU than relaying the token (issue 11). Deadlines are clocks the stream
loop writes (a float per token) and the watchdog reads a few times a second, cancelling the scope with a
reason when one lapsed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import anyio

log = logging.getLogger(__name__)

# Why a turn's generation was cancelled from outside its loop.
STOPPED = "stopped"  # the stop endpoint (D3)
SHUTDOWN = "shutdown"  # SIGTERM (F12)
STALLED = "stalled"  # the answering tier went silent past its idle timeout (F10)
SEND_TIMEOUT = "send_timeout"  # the visitor stopped reading (L3)
DISCONNECTED = "disconnected"  # the visitor left (D2)

WATCH_INTERVAL_SECONDS = 0.25


class TurnControl:
    """One streaming turn's cancel scope, why it was cancelled, and the clocks its watchdog reads.

    The stream loop flips `sending` around each write and stamps `since` (event-loop time) at each flip, so the
    watchdog can tell "waiting for the upstream since t" (idle deadline) from "writing to the visitor since t"
    (send deadline) without a timer per token.
    """

    __slots__ = ("_clock", "idle_seconds", "reason", "scope", "sending", "since")

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or asyncio.get_running_loop().time
        self.scope: anyio.CancelScope | None = None
        self.reason: str | None = None
        self.idle_seconds: float | None = None  # set once a tier answers (before, its first-token timeout rules)
        self.sending = False
        self.since = self._clock()

    def now(self) -> float:
        return self._clock()

    @property
    def clock(self) -> Callable[[], float]:
        """The clock itself (event-loop time), for a caller in C that stamps `since`."""
        return self._clock

    def cancel(self, reason: str) -> None:
        """End the generation now; the first reason given is the one reported."""
        if self.reason is None:
            self.reason = reason
        if self.scope is not None:
            self.scope.cancel()

    @property
    def stopped(self) -> bool:
        return self.reason is not None

    def overdue(self, now: float, *, send_timeout: float) -> str | None:
        """The lapsed deadline, if any: the visitor not reading, or the tier silent past its idle timeout."""
        waited = now - self.since
        if self.sending:
            return SEND_TIMEOUT if waited > send_timeout else None
        if self.idle_seconds is not None and waited > self.idle_seconds:
            return STALLED
        return None


class RunningTurns:
    """This process's streaming turns by conversation. A stop request must reach the worker that streams the turn:
    here in process, across replicas through `stop_bus.StopBus`."""

    def __init__(self, *, send_timeout_seconds: float = 30.0) -> None:
        self._controls: dict[str, TurnControl] = {}
        self.send_timeout_seconds = send_timeout_seconds
        # Told when a turn starts or ends here, so other replicas can find it (stop_bus.StopBus).
        self.on_register: Callable[[str], None] | None = None
        self.on_unregister: Callable[[str], None] | None = None

    def register(self, conversation_id: str, control: TurnControl) -> None:
        self._controls[conversation_id] = control
        if self.on_register is not None:
            self.on_register(conversation_id)

    def unregister(self, conversation_id: str, control: TurnControl) -> None:
        if self._controls.get(conversation_id) is control:
            del self._controls[conversation_id]
            if self.on_unregister is not None:
                self.on_unregister(conversation_id)

    def conversations(self) -> list[str]:
        """The conversations whose turn this process streams now."""
        return list(self._controls)

    def stop(self, conversation_id: str, *, reason: str = STOPPED) -> bool:
        """Stop the turn's generation; False when nothing is generating in that conversation."""
        control = self._controls.get(conversation_id)
        if control is None:
            return False
        control.cancel(reason)
        return True

    def stop_all(self, *, reason: str) -> int:
        controls = list(self._controls.values())
        for control in controls:
            control.cancel(reason)
        return len(controls)

    def check(self, now: float) -> int:
        """Cancel every turn whose idle or send deadline lapsed; how many were cancelled."""
        lapsed = 0
        for control in list(self._controls.values()):
            reason = control.overdue(now, send_timeout=self.send_timeout_seconds)
            if reason is not None and not control.stopped:
                control.cancel(reason)
                lapsed += 1
        return lapsed

    async def watch(self, interval: float = WATCH_INTERVAL_SECONDS) -> None:
        """The process's one watchdog (a lifespan task): deadlines are honoured within `interval`."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            try:
                self.check(loop.time())
            except Exception:
                log.exception("the stream watchdog failed a round")

    def __len__(self) -> int:
        return len(self._controls)
