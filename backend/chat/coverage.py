"""Whether the retrieved sources answer the question at all, and the honest reply when they do not.

Retrieval always returns its k best chunks, even for a question the creator never wrote about. Confidence is
the relevance (relevance.py: meaning plus the question's own words) of the best source sentence; below
`THRESHOLD` every tier says the content does not cover this and names the closest topics it does cover (the
titles of what was retrieved), and the answer is stored `unanswered` for curators.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from backend.chat.personality import WARM
from backend.chat.prompt import Prompt
from backend.chat.relevance import best_relevance, read_question
from backend.chat.sentences import SentenceVectors
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


def refusal_text(creator: Creator | None, weight: float, titles: Sequence[str]) -> str:
    """The reply when the content does not cover the question; the style changes, never the substance."""
    # Titles in quotes after the colon: the claim check reads the whole line as one framing sentence.
    quoted = [f"“{title}”" for title in dict.fromkeys(t for t in titles if t)]
    named = ", ".join(quoted[:-1]) + f" and {quoted[-1]}" if len(quoted) > 1 else "".join(quoted)
    if creator is not None and weight >= WARM:
        head = "I haven't covered that in my content."
        tail = f" The closest topics I do cover: {named}." if named else ""
    else:
        whose = f"{creator.name}'s content" if creator else "The available content"
        head = f"{whose[0].upper()}{whose[1:]} doesn't cover this."
        tail = f" The closest topics it does cover: {named}." if named else ""
    return head + tail


def uncovered_prompt(prompt: Prompt) -> Prompt:
    """The prompt for a model tier when the sources do not answer: decline, and name the closest topics."""
    reply = refusal_text(prompt.creator, prompt.personality_weight, [hit.title for hit in prompt.sources])
    instruction = (
        "The sources found for this question do not answer it. Do not answer it from memory or guess. "
        f'Reply with exactly this, and nothing else:\n"{reply}"\n\nQuestion: {prompt.question}'
    )
    messages = [*prompt.messages[:-1], {"role": "user", "content": instruction}]
    return replace(prompt, messages=messages, covered=False)
