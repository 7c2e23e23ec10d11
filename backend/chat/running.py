"""Turns generating right now, so the stop endpoint and shutdown can end them from another request."""

from __future__ import annotations

import anyio


class RunningTurns:
    """In-process: a stop request must reach the worker that streams the turn (one worker per embedded index)."""

    def __init__(self) -> None:
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._reasons: dict[str, str] = {}

    def register(self, conversation_id: str, scope: anyio.CancelScope) -> None:
        self._scopes[conversation_id] = scope
        self._reasons.pop(conversation_id, None)

    def unregister(self, conversation_id: str, scope: anyio.CancelScope) -> None:
        if self._scopes.get(conversation_id) is scope:
            del self._scopes[conversation_id]
            self._reasons.pop(conversation_id, None)

    def stop(self, conversation_id: str, *, reason: str = "stopped") -> bool:
        """Cancel the turn's generation; False when nothing is generating in that conversation."""
        scope = self._scopes.get(conversation_id)
        if scope is None:
            return False
        self._reasons[conversation_id] = reason
        scope.cancel()
        return True

    def stop_all(self, *, reason: str) -> int:
        for conversation_id in list(self._scopes):
            self.stop(conversation_id, reason=reason)
        return len(self._scopes)

    def reason(self, conversation_id: str) -> str:
        return self._reasons.get(conversation_id, "stopped")

    def __len__(self) -> int:
        return len(self._scopes)
