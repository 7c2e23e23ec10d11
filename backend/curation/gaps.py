"""The knowledge-gap inbox: answers that signal a gap (not covered, unsupported claims, 👎, the extractive tier answered
because the model tiers before it failed) are grouped by question similarity, per creator, into topics a curator can
work through, and answer with a curated answer (answers.py).

Grouping is incremental: each refresh embeds only the answers no topic holds yet (with the service's one
Embedder) and adds each to the nearest topic of its creator, or starts a new one. A resolved topic reopens
when a question joins it that was asked after the first ingest that followed its resolution: the curator
fixed the content, re-ingested, and visitors still ask. A topic answered with a curated answer leaves the inbox too,
and reopens when a question joins it after that: a question the answer did not match (one it matched is answered by
it, and signals no gap).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import numpy as np

from backend.curation import gaps_store
from backend.curation.gaps_store import GapTurn, TopicState
from backend.settings import ExtractiveTierSettings, Settings
from backend.storage.repository import Sessions

# Cosine similarity (all-MiniLM-L6-v2, normalized) above which two questions are the same topic: paraphrases
# score 0.75-0.95, different questions about the same creator mostly below 0.6.
SIMILARITY = 0.72
EXAMPLES = 5
SOURCES = 3
BATCH = 2000


# Questions → L2-normalized vectors (the service runs the Embedder in a worker thread; the CLI calls it directly).
EmbedQuestions = Callable[[list[str]], Awaitable[np.ndarray]]


def extractive_tier_names(settings: Settings) -> list[str]:
    """The extractive tiers whose answers signal a gap: those a configured model tier comes before, which answer only
    when every model before them failed or was skipped. On the embedded defaults (extractive alone) every answer is
    the extractive tier's, and none of them signals anything by that."""
    names: list[str] = []
    after_a_model = False
    for tier in settings.llm.tiers:
        if isinstance(tier, ExtractiveTierSettings):
            if after_a_model:
                names.append(tier.name)
        else:
            after_a_model = True
    return names


async def refresh_gaps(
    sessions: Sessions, embed: EmbedQuestions, *, extractive_tiers: list[str], at_most: int | None = None
) -> int:
    """Group every answer that signals a gap and is in no topic yet; returns how many were grouped.

    Two processes refreshing at once cannot group one answer twice: its membership row is keyed by the
    answer (the second one's write fails and the next refresh takes what is still ungrouped). `at_most`
    bounds the work of one call (a page load); the rest waits for the next one.
    """
    grouped = 0
    while True:
        batch = BATCH if at_most is None else min(BATCH, at_most - grouped)
        if batch <= 0:
            return grouped
        turns = await gaps_store.ungrouped_gap_turns(sessions, extractive_tiers=extractive_tiers, limit=batch)
        if not turns:
            return grouped
        topics = await gaps_store.load_topics(sessions, creators={turn.creator for turn in turns})
        vectors = await embed([turn.question for turn in turns])
        ingests = await gaps_store.ingests_since(sessions, [t.resolved_at for t in topics if t.resolved_at])
        touched = _group(turns, vectors, topics, ingests)
        if not await gaps_store.save_topics(sessions, touched):
            return grouped  # a concurrent refresh took these; the next one continues after it
        grouped += len(turns)
        if len(turns) < batch:
            return grouped


class _CreatorTopics:
    """One creator's topics with their centroids as one matrix, so each question is one matrix-vector product."""

    def __init__(self, topics: list[TopicState], dimension: int) -> None:
        self.topics = topics
        self.matrix = np.asarray([t.centroid for t in topics], dtype=np.float32).reshape(len(topics), dimension)

    def nearest(self, vector: np.ndarray) -> tuple[int, float]:
        if not self.topics:
            return -1, -1.0
        scores = self.matrix @ vector
        index = int(np.argmax(scores))
        return index, float(scores[index])

    def append(self, topic: TopicState, vector: np.ndarray) -> None:
        self.topics.append(topic)
        self.matrix = np.vstack([self.matrix, vector[None, :]])

    def centroid_of(self, topic: TopicState) -> list[float]:
        return [round(float(x), 6) for x in self.matrix[self.topics.index(topic)]]


def _group(
    turns: list[GapTurn], vectors: np.ndarray, topics: list[TopicState], ingests: dict[datetime, datetime | None]
) -> list[TopicState]:
    dimension = vectors.shape[1]
    by_creator: dict[str | None, _CreatorTopics] = {}
    for topic in topics:
        by_creator.setdefault(topic.creator, _CreatorTopics([], dimension)).append(
            topic, np.asarray(topic.centroid, dtype=np.float32)
        )
    touched: dict[str, TopicState] = {}
    for turn, vector in zip(turns, vectors, strict=True):
        index_ = by_creator.setdefault(turn.creator, _CreatorTopics([], dimension))
        at, score = index_.nearest(vector)
        if at < 0 or score < SIMILARITY:
            topic = _new_topic(turn, vector)
            index_.append(topic, vector)
        else:
            topic = index_.topics[at]
            index_.matrix[at] = _add(topic, turn, vector, index_.matrix[at], ingests)
        touched[topic.id] = topic
    for topic in touched.values():
        topic.centroid = by_creator[topic.creator].centroid_of(topic)
    return list(touched.values())


def _new_topic(turn: GapTurn, vector: np.ndarray) -> TopicState:
    return TopicState(
        id=gaps_store.new_topic_id(), creator=turn.creator, label=turn.question[:300], centroid=[], count=1,
        first_seen=turn.asked_at, last_seen=turn.asked_at, examples=[turn.question[:300]],
        sources=_best_sources([], turn.sources), signals=dict(Counter(turn.signals)), resolved_at=None,
        answered_by=None, answered_at=None, new=True,
        members=[(turn.message_id, turn.asked_at)],
    )  # fmt: skip


def _add(
    topic: TopicState,
    turn: GapTurn,
    vector: np.ndarray,
    centroid: np.ndarray,
    ingests: dict[datetime, datetime | None],
) -> np.ndarray:
    """Count the turn into the topic; returns the new centroid."""
    # Running mean of the normalized question vectors, normalized again: the topic drifts with its questions.
    mean = (centroid * topic.count + vector) / (topic.count + 1)
    topic.count += 1
    topic.first_seen = min(topic.first_seen, turn.asked_at)
    topic.last_seen = max(topic.last_seen, turn.asked_at)
    question = turn.question[:300]
    if question not in topic.examples:
        topic.examples = [question, *topic.examples][:EXAMPLES]
    topic.sources = _best_sources(topic.sources, turn.sources)
    topic.signals = dict(Counter(topic.signals) + Counter(turn.signals))
    topic.members = [*(topic.members or []), (turn.message_id, turn.asked_at)]
    if topic.answered_at is not None and turn.asked_at > topic.answered_at:
        topic.answered_at = topic.answered_by = None  # asked again, and the curated answer did not match it
    if topic.resolved_at is not None:
        reingested = ingests.get(topic.resolved_at)
        if reingested is not None and turn.asked_at > reingested:
            topic.resolved_at = None  # still asked after the fix was ingested: back in the inbox
    return mean / (float(np.linalg.norm(mean)) or 1.0)


def _best_sources(kept: list[dict[str, Any]], found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The highest-scoring sources retrieval found for the topic's questions, one per document."""
    best: dict[str, dict[str, Any]] = {}
    for source in [*kept, *found]:
        key = str(source.get("document_id") or source.get("title") or "")
        slim = {k: source.get(k) for k in ("document_id", "creator", "title", "url", "score")}
        if key and (key not in best or float(slim.get("score") or 0) > float(best[key].get("score") or 0)):
            best[key] = slim
    return sorted(best.values(), key=lambda s: float(s.get("score") or 0), reverse=True)[:SOURCES]
