"""How a turn ended, filled in as it streams: the status stored with the answer and what `done` reports."""

from __future__ import annotations

from typing import Any

from backend.errors import ErrorCode, LorechatError
from backend.storage.records import MessageStatus
from backend.stream.running import SHUTDOWN, STALLED, STOPPED


class TurnOutcome:
    def __init__(self) -> None:
        self.status = MessageStatus.streaming
        self.finish_reason = "stop"
        self.tier: str | None = None
        self.skipped: list[tuple[str, str]] = []  # (tier, reason) passed over before `tier` answered
        self.usage: dict[str, int] | None = None
        self.error: LorechatError | None = None
        self.finalized = False
        self.ttft_ms: int | None = None  # from the turn's start to its first token, for the curator dashboard
        # The text the visitor was sent: the first `_sent_chars` of the tier stream's text (which also holds the
        # piece being written, until its write returns). One copy of the answer per turn, not two.
        self._sent_chars = 0
        self._stream: Any = None  # the cascade's TierStream once a tier answered

    @property
    def text(self) -> str:
        """The answer as sent: what gets stored (INV-2)."""
        return self._stream.text[: self._sent_chars] if self._stream is not None else ""

    def sent(self, text: str) -> None:
        """`text`, the attached stream's latest piece, reached the visitor."""
        self._sent_chars += len(text)

    def attach(self, stream: Any) -> None:
        self._stream = stream
        self.tier = stream.tier
        self.skipped = list(stream.fallbacks)

    def completed(self) -> None:
        self.status = MessageStatus.done
        self.finish_reason = self._stream.finish_reason or "stop"

    def failed(self, error: LorechatError) -> None:
        # Nothing streamed yet: a plain error. Something streamed: the partial answer is interrupted (F9).
        self.status = MessageStatus.interrupted if self._sent_chars else MessageStatus.error
        self.error = error

    def stopped(self, reason: str) -> None:
        if reason == SHUTDOWN:
            self.failed(LorechatError(ErrorCode.shutting_down, "The server is restarting; please ask again."))
            self.status = MessageStatus.interrupted
            return
        self.status = MessageStatus.stopped
        self.finish_reason = "stopped"
        self.error = None

    def cancelled(self, reason: str) -> None:
        """The generation was cancelled from outside (running.py's reasons)."""
        if reason in (STOPPED, SHUTDOWN):
            self.stopped(reason)
        elif reason == STALLED and self._stream is not None:
            self.failed(self._stream.stalled())
        else:  # the visitor left or stopped reading: no terminal event reaches them; the partial is kept (D2)
            self.status = MessageStatus.interrupted

    async def close_upstream(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()  # idempotent

    async def measure_usage(self) -> None:
        """Once the turn ended: its token figures, for the final write and `done`."""
        if self._stream is not None:
            usage = await self._stream.usage()
            self.usage = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
