"""Whether the retrieved sources answer the question at all (the honest reply when they do not is chat/prompt.py's).

Retrieval always returns its k best chunks, even for a question the creator never wrote about. Confidence is
the relevance (relevance.py: meaning plus the question's own words) of the best source sentence; below
`THRESHOLD` every tier says the content does not cover this and names the closest topics it does cover (the
titles of what was retrieved), and the answer is stored `unanswered` for curators.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from backend.grounding.relevance import best_relevance, read_question
from backend.grounding.sentences import SentenceVectors
from backend.stages import Creator, Hit

# Calibrated on examples/eval/answers.jsonl (answerable vs unanswerable turns) and examples/eval/queries.jsonl
# (all answerable); the figures are in BENCHMARKS.md ("Answer checks").
THRESHOLD = 0.36
_TOPICS = 3


@dataclass(frozen=True, slots=True)
class Coverage:
    confidence: float
    covered: bool
    topics: tuple[str, ...]  # the closest topics the content does cover (titles, best first)


def follow_up_context(question: str, search_query: str) -> str:
    """The earlier question(s) a follow-up was expanded with (prompt.search_query_for), or ""."""
    question = question.strip()
    if search_query == question or not search_query.endswith(question):
        return ""
    return search_query[: -len(question)].strip()


def topics(hits: Sequence[Hit]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(hit.title for hit in hits if hit.title))[:_TOPICS]


def assess(
    question: str,
    *,
    search_query: str,
    hits: Sequence[Hit],
    creator: Creator | None,
    vectors: SentenceVectors,
    threshold: float = THRESHOLD,
) -> Coverage:
    """CPU-bound (embeds the question and unseen source sentences): call from a worker thread."""
    if not hits:
        return Coverage(0.0, False, ())
    context = follow_up_context(question, search_query)
    read = read_question(question, creator=creator, context=context)
    context_focus = read_question(context, creator=creator).focus if context else ""
    confidence = best_relevance(read, hits, vectors, context_focus=context_focus)
    return Coverage(round(confidence, 4), confidence >= threshold, topics(hits))
