"""Retrieval under back-pressure: a bounded number of searches at once, bursts refused, each one bounded in time.

At most `retrieval.max_concurrent` searches are in flight, each in a worker thread; the model embeds one query at
a time (the embedder's lock), so the others queue in their threads, where waiting costs the event loop nothing. A
new search waits its turn while the searches queued ahead of it should finish within
`retrieval.max_wait_seconds` (estimated from recent search times) and fewer than `retrieval.max_waiting` wait;
beyond either it is refused at once (503, Retry-After 1) rather than after the full timeout. Admission by time,
not by count alone: on a busy machine a search takes longer, and a burst the queue can still clear in a second
or two is served, not refused. Each search runs in a worker thread bounded by `index.timeout_seconds` (F6); on
timeout the thread is abandoned, not awaited (a thread cannot be cancelled, and waiting would void the bound).
A search the retriever's cache holds (a question asked again) is answered on the loop, before any of that: no
thread, no slot, and never refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from functools import partial

import anyio

from backend import tracing
from backend.errors import ErrorCode, LorechatError
from backend.retrieval.search import Retriever
from backend.settings import Settings
from backend.stages import Hit

_SMOOTHING = 0.2  # weight of the newest search in the running mean of search times


class RetrievalGate:
    def __init__(self, retriever: Retriever, settings: Settings) -> None:
        self._retriever = retriever
        self._max_waiting = settings.retrieval.max_waiting
        self._max_wait = settings.retrieval.max_wait_seconds
        self._timeout = settings.index.timeout_seconds
        self._slots = anyio.CapacityLimiter(settings.retrieval.max_concurrent)
        self._search_seconds = 0.0  # running mean of one search's time in its thread

    def _busy(self) -> bool:
        slots = self._slots.statistics()
        if slots.borrowed_tokens < slots.total_tokens:
            return False
        if slots.tasks_waiting >= self._max_waiting:
            return True
        expected_wait = (slots.tasks_waiting + 1) * self._search_seconds / slots.total_tokens
        return expected_wait > self._max_wait

    def _timed_search(self, query: str, creator: str | None, k: int | None = None) -> list[Hit]:
        started = time.perf_counter()
        try:
            return self._retriever.search(query, creator=creator, k=k)
        finally:
            took = time.perf_counter() - started
            mean = self._search_seconds
            self._search_seconds = took if mean == 0.0 else mean + _SMOOTHING * (took - mean)

    def start(self, query: str, *, creator: str | None, k: int | None = None) -> asyncio.Future[list[Hit]]:
        """The turn's search, begun: answered at once from the retriever's cache when it holds the question, else
        admitted or refused now (503) when the queue could not serve it in time (before the turn's write that runs
        beside it: a refused question is never stored), then run in a worker thread under the slots. `k`: hits
        wanted (default retrieval.k)."""
        remembered = self._retriever.recall(query, creator=creator, k=k)
        if remembered is not None:
            with tracing.span("search", {tracing.CACHED: True, tracing.HITS: len(remembered)}):
                pass  # a mark in the turn's trace: answered from memory, no embedding, no index call
            answered: asyncio.Future[list[Hit]] = asyncio.get_running_loop().create_future()
            answered.set_result(remembered)
            return answered
        if self._busy():
            raise LorechatError(ErrorCode.index_unavailable, "Search is busy; please ask again shortly", retry_after=1)
        return asyncio.ensure_future(self._search(query, creator, k))

    async def within(self, query: str, documents: Sequence[str], *, creator: str | None, k: int) -> list[Hit]:
        """The best chunks of these documents for the question (a curated answer's linked sources), in a worker
        thread bounded like a search; never refused (it runs only for a question a curated answer fits)."""
        return await self._in_worker(
            partial(self._retriever.search_documents, query, list(documents), creator=creator, k=k)
        )

    async def _search(self, query: str, creator: str | None, k: int | None = None) -> list[Hit]:
        # The span covers the wait for a slot too; the embedding and the index call are its children.
        with tracing.span("search") as span:
            hits = await self._in_worker(partial(self._timed_search, query, creator, k))
            span.set_attribute(tracing.HITS, len(hits))
            return hits

    async def _in_worker(self, search: Callable[[], list[Hit]]) -> list[Hit]:
        """`search` in a worker thread under the slots, bounded by `index.timeout_seconds` (then 503)."""
        try:
            with anyio.fail_after(self._timeout):
                return await anyio.to_thread.run_sync(search, abandon_on_cancel=True, limiter=self._slots)
        except TimeoutError as exc:
            raise LorechatError(
                ErrorCode.index_unavailable, f"The search index did not answer within {self._timeout:g}s", retry_after=5
            ) from exc
