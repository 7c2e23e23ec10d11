"""Turns generating right now, so the stop endpoint and shutdown can end them from another request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import anyio


class TurnStop:
    """Stops a turn's generation (stop endpoint, shutdown) with one cancel scope per awaited piece, never one
    open across a `yield`: closing such a generator from inside another scope (sse-starlette does, when a
    frozen reader hits the send timeout, L3) breaks anyio's scope stack."""

    def __init__(self) -> None:
        self.stopped = False
        self._requested = False
        self._step: anyio.CancelScope | None = None

    def cancel(self) -> None:
        self._requested = True
        if self._step is not None:
            self._step.cancel()

    async def next_piece(self, pieces: AsyncIterator[str]) -> str | None:
        """The next piece, or None when generation ended or was stopped (then `stopped` is True)."""
        if self._requested:
            self.stopped = True
            return None
        with anyio.CancelScope() as step:
            self._step = step
            piece = await anext(pieces, None)
        self._step = None
        if step.cancelled_caught or (self._requested and piece is not None):
            self.stopped = True
            return None
        return piece


class RunningTurns:
    """In-process: a stop request must reach the worker that streams the turn (one worker per embedded index)."""

    def __init__(self) -> None:
        self._stops: dict[str, TurnStop] = {}
        self._reasons: dict[str, str] = {}
        # Told when a turn starts or ends here, so other replicas can find it (stop_bus.StopBus).
        self.on_register: Callable[[str], None] | None = None
        self.on_unregister: Callable[[str], None] | None = None

    def register(self, conversation_id: str, stop: TurnStop) -> None:
        self._stops[conversation_id] = stop
        self._reasons.pop(conversation_id, None)
        if self.on_register is not None:
            self.on_register(conversation_id)

    def unregister(self, conversation_id: str, stop: TurnStop) -> None:
        if self._stops.get(conversation_id) is stop:
            del self._stops[conversation_id]
            self._reasons.pop(conversation_id, None)
            if self.on_unregister is not None:
                self.on_unregister(conversation_id)

    def conversations(self) -> list[str]:
        """The conversations whose turn this process streams now."""
        return list(self._stops)

    def stop(self, conversation_id: str, *, reason: str = "stopped") -> bool:
        """Stop the turn's generation; False when nothing is generating in that conversation."""
        stop = self._stops.get(conversation_id)
        if stop is None:
            return False
        self._reasons[conversation_id] = reason
        stop.cancel()
        return True

    def stop_all(self, *, reason: str) -> int:
        for conversation_id in list(self._stops):
            self.stop(conversation_id, reason=reason)
        return len(self._stops)

    def reason(self, conversation_id: str) -> str:
        return self._reasons.get(conversation_id, "stopped")

    def __len__(self) -> int:
        return len(self._stops)
