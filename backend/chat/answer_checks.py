"""The turn's two answer checks, off the event loop: coverage before the tiers, the claim check after the answer.

Both embed text with the retrieval model (CPU-bound), so each runs in a worker thread; source sentences are
cached across turns (sentences.py), which keeps a turn over known chunks to a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import anyio

from backend.chat.citations import AnswerCheck, check_answer
from backend.chat.coverage import Coverage, assess
from backend.chat.sentences import SentenceVectors
from backend.stages import Creator, Hit


class AnswerChecks:
    def __init__(self, vectors: SentenceVectors) -> None:
        self.vectors = vectors

    async def coverage(
        self, *, question: str, search_query: str, hits: Sequence[Hit], creator: Creator | None
    ) -> Coverage:
        work = partial(assess, question, search_query=search_query, hits=hits, creator=creator, vectors=self.vectors)
        return await anyio.to_thread.run_sync(work)

    async def check(self, *, text: str, hits: Sequence[Hit], creator: Creator | None) -> AnswerCheck:
        if not text.strip():
            return AnswerCheck([])
        work = partial(check_answer, text, hits, self.vectors, creator=creator)
        return await anyio.to_thread.run_sync(work)
