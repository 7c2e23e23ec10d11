"""How a turn ended, filled in as it streams: the status stored with the answer and what `done` reports."""

from __future__ import annotations

from typing import Any

from backend.errors import ErrorCode, LorechatError
from backend.storage.records import MessageStatus


class TurnOutcome:
    def __init__(self) -> None:
        self.status = MessageStatus.streaming
        self.finish_reason = "stop"
        self.tier: str | None = None
        self.skipped: list[tuple[str, str]] = []  # (tier, reason) passed over before `tier` answered
        self.usage: dict[str, int] | None = None
        self.error: LorechatError | None = None
        self.finalized = False
        self._stream: Any = None  # the cascade's TierStream once a tier answered

    def attach(self, stream: Any) -> None:
        self._stream = stream
        self.tier = stream.tier
        self.skipped = list(stream.fallbacks)

    def completed(self) -> None:
        self.status = MessageStatus.done
        self.finish_reason = self._stream.finish_reason or "stop"
        self._take_usage()

    def failed(self, error: LorechatError) -> None:
        # Nothing streamed yet: a plain error. Something streamed: the partial answer is interrupted (F9).
        streamed = self._stream is not None and self._stream.text
        self.status = MessageStatus.interrupted if streamed else MessageStatus.error
        self.error = error
        self._take_usage()

    def stopped(self, reason: str) -> None:
        if reason == "shutdown":
            self.failed(LorechatError(ErrorCode.shutting_down, "The server is restarting; please ask again."))
            self.status = MessageStatus.interrupted
            return
        self.status = MessageStatus.stopped
        self.finish_reason = "stopped"
        self.error = None
        self._take_usage()

    async def close_upstream(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()  # idempotent

    def _take_usage(self) -> None:
        if self._stream is not None:
            usage = self._stream.usage
            self.usage = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
