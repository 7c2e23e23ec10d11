"""The turn's two answer checks, off the event loop: coverage before the tiers, the claim check after the answer.

Both embed text with the retrieval model (CPU-bound), so each runs in a worker thread; source sentences are
cached across turns (sentences.py), which keeps a turn over known chunks to a few milliseconds. The threads are an
executor's, not anyio's: anyio's per-call limiter, cancel scope and Python queue cost ~0.2 ms of the event loop a
call (py-spy), as much as a check over cached vectors itself, where an executor's queue is in C. A cancelled turn
does not wait for its check: the thread finishes it and the result is dropped.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from backend.grounding.claim_check import AnswerCheck, check_answer
from backend.grounding.coverage import Coverage, assess
from backend.grounding.sentences import SentenceVectors
from backend.stages import Creator, Hit

T = TypeVar("T")

_COVERAGES_KEPT = 4096  # ~1 KiB each

# A few threads: the checks hold the GIL but for the model's runs, and each model session runs one call at a time,
# so more threads than cores add no throughput, only stacks and malloc arenas.
_WORKERS = ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 2), thread_name_prefix="answer-checks")


async def _in_worker(work: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_WORKERS, work)


class AnswerChecks:
    def __init__(self, vectors: SentenceVectors) -> None:
        self.vectors = vectors
        # The coverage of recent turns, by what it is a function of; touched on the event loop only.
        self._coverages: OrderedDict[Hashable, Coverage] = OrderedDict()

    async def coverage(
        self, *, question: str, search_query: str, hits: Sequence[Hit], creator: Creator | None
    ) -> Coverage:
        """The question asked again over the same sources (the search cache's hits) has the coverage it had: looked
        up on the loop, without the thread or the ~0.7 ms of reading every source sentence again. A source is keyed
        by its id and its text's hash (a re-ingested chunk keeps its id), not by the text, which stays unheld."""
        key = (question, search_query, creator, tuple((hit.chunk_id, hash(hit.text)) for hit in hits))
        known = self._coverages.get(key)
        if known is not None:
            self._coverages.move_to_end(key)
            return known
        work = partial(assess, question, search_query=search_query, hits=hits, creator=creator, vectors=self.vectors)
        found = await _in_worker(work)
        self._coverages[key] = found
        if len(self._coverages) > _COVERAGES_KEPT:
            self._coverages.popitem(last=False)
        return found

    async def check(self, *, text: str, hits: Sequence[Hit], creator: Creator | None) -> AnswerCheck:
        if not text.strip():
            return AnswerCheck([])
        work = partial(check_answer, text, hits, self.vectors, creator=creator)
        return await _in_worker(work)
