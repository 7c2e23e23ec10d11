"""Retrieval under back-pressure: a bounded number of searches at once, bursts refused, each one bounded in time.

Query embedding is CPU-bound, so more searches than `retrieval.max_concurrent` at once only slow every one of
them; beyond `retrieval.max_waiting` queued searches a new one is refused at once (503, Retry-After 1) rather
than after the full timeout. Each search runs in a worker thread bounded by `index.timeout_seconds` (F6); on
timeout the thread is abandoned, not awaited (a thread cannot be cancelled, and waiting would void the bound).
"""

from __future__ import annotations

from functools import partial

import anyio

from backend.errors import ErrorCode, LorechatError
from backend.retrieval.search import Retriever
from backend.settings import Settings
from backend.stages import Hit


class RetrievalGate:
    def __init__(self, retriever: Retriever, settings: Settings) -> None:
        self._retriever = retriever
        self._max_waiting = settings.retrieval.max_waiting
        self._timeout = settings.index.timeout_seconds
        self._slots = anyio.CapacityLimiter(settings.retrieval.max_concurrent)

    async def search(self, query: str, *, creator: str | None) -> list[Hit]:
        slots = self._slots.statistics()
        if slots.borrowed_tokens >= slots.total_tokens and slots.tasks_waiting >= self._max_waiting:
            raise LorechatError(ErrorCode.index_unavailable, "Search is busy; please ask again shortly", retry_after=1)
        try:
            with anyio.fail_after(self._timeout):
                search = partial(self._retriever.search, query, creator=creator)
                return await anyio.to_thread.run_sync(search, abandon_on_cancel=True, limiter=self._slots)
        except TimeoutError as exc:
            raise LorechatError(
                ErrorCode.index_unavailable, f"The search index did not answer within {self._timeout:g}s", retry_after=5
            ) from exc
