"""The answer's final write, and its retry in the background when the database is lost (F5).

`write` moves the streaming placeholder to its terminal state and releases the turn's lease. When it fails,
`write_later` keeps retrying (with back-off, up to `server.reaper_seconds`) so the answer leaves "streaming"
once the database is back and its conversation accepts turns again (INV-1), instead of answering 409 until a
reaper finds it. The client saw an error, never `done`, so an answer it did not get is stored interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import anyio

from backend.errors import ErrorCode, LorechatError
from backend.storage import repository
from backend.storage.leases import Leases
from backend.storage.records import HISTORY_STATUSES, MessageStatus
from backend.storage.repository import Sessions

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FinalAnswer:
    assistant_message_id: str
    text: str
    status: MessageStatus
    error_code: ErrorCode | None
    cascade_tier: str | None
    sources: list[dict[str, Any]]
    usage: dict[str, int] | None
    search_query: str
    # The claim check (grounding/claim_check.py): per sentence its span, citations, quote and support.
    citations: list[dict[str, Any]] | None = None
    unsupported_claims: int = 0
    unanswered: bool = False  # retrieval confidence was too low: the answer said the content does not cover it
    ttft_ms: int | None = None  # None when no tier answered


class FinalWriter:
    def __init__(self, *, sessions: Sessions, leases: Leases | None, retry_for_seconds: float) -> None:
        self._sessions = sessions
        self._leases = leases  # renewed while this process streams the turn (F13)
        self._retry_for = retry_for_seconds
        self._retrying: set[asyncio.Task[None]] = set()  # final writes waiting for the database

    async def write(self, answer: FinalAnswer) -> bool:
        """Store the answer; False when it already left "streaming" (a peer reaped it after our lease lapsed)."""
        written = await repository.finish_turn(
            self._sessions,
            assistant_message_id=answer.assistant_message_id,
            content=answer.text,
            status=answer.status,
            cascade_tier=answer.cascade_tier,
            sources=answer.sources,
            usage=answer.usage,
            search_query=answer.search_query,
            error_code=answer.error_code.value if answer.error_code else None,
            citations=answer.citations,
            unsupported_claims=answer.unsupported_claims,
            unanswered=answer.unanswered,
            ttft_ms=answer.ttft_ms,
        )
        if self._leases is not None:
            self._leases.release(answer.assistant_message_id)  # stored, or already reaped: nothing to vouch for
        return written

    def write_later(self, answer: FinalAnswer) -> None:
        """The write failed (database lost): retry in the background; the client got a retryable error."""
        status = MessageStatus.interrupted if answer.status in HISTORY_STATUSES else answer.status
        code = answer.error_code or ErrorCode.database_unavailable
        retry = replace(answer, status=status, error_code=code)
        task = asyncio.get_running_loop().create_task(self._retry(retry))
        self._retrying.add(task)
        task.add_done_callback(self._retrying.discard)

    async def _retry(self, answer: FinalAnswer) -> None:
        delay, deadline = 0.5, time.monotonic() + self._retry_for
        while time.monotonic() < deadline:
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)
            with contextlib.suppress(LorechatError):
                await self.write(answer)
                return
        log.warning("gave up storing message %s; the reaper will mark it", answer.assistant_message_id)
        if self._leases is not None:
            self._leases.release(answer.assistant_message_id)  # let its lease lapse, so the reaper may finish it
