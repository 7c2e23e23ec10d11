"""Knowledge-gap storage: answers that signal a gap (not yet grouped), gap topics, their members, resolution."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, false, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, defer

from backend.storage.models import Conversation, Feedback, GapMember, GapTopic, IngestRun, Message, is_valid_id, new_id
from backend.storage.records import MessageStatus
from backend.storage.repository import Sessions, db_errors

log = logging.getLogger(__name__)

# Answers a visitor saw to the end (or stopped): a failed turn says nothing about the content.
_ANSWERED = (MessageStatus.done, MessageStatus.stopped)


@dataclass(frozen=True, slots=True)
class GapTurn:
    """One answer that signals a gap, with the question that led to it."""

    message_id: str
    creator: str | None
    question: str
    asked_at: datetime
    sources: list[dict[str, Any]]
    signals: tuple[str, ...]


@dataclass(slots=True)
class TopicState:
    """A gap topic as the grouping step reads and updates it (written back by `save_topics`)."""

    id: str
    creator: str | None
    label: str
    centroid: list[float]
    count: int
    first_seen: datetime
    last_seen: datetime
    examples: list[str]
    sources: list[dict[str, Any]]
    signals: dict[str, int]
    resolved_at: datetime | None
    answered_by: str | None = None  # the curated answer written for it
    answered_at: datetime | None = None
    new: bool = False
    members: list[tuple[str, datetime]] | None = None  # (message id, asked at) added by this refresh


@dataclass(frozen=True, slots=True)
class TopicView:
    id: str
    creator: str | None
    label: str
    count: int
    first_seen: datetime
    last_seen: datetime
    examples: list[str]
    sources: list[dict[str, Any]]
    signals: dict[str, int]
    resolved_at: datetime | None
    answered_by: str | None = None  # the curated answer written for it (answered: out of the inbox)

    @property
    def status(self) -> str:
        return "resolved" if self.resolved_at else "answered" if self.answered_by else "open"


# Answers are flagged when they finish, at most a stream's length after they were created: a refresh looks
# this far behind the newest grouped question, so none is missed while the scan stays a short index range.
_FLAG_SLACK = timedelta(hours=1)


async def ungrouped_gap_turns(sessions: Sessions, *, extractive_tiers: list[str], limit: int = 2000) -> list[GapTurn]:
    """Answers with a gap signal that no topic holds yet, oldest first (a refresh takes them in batches).

    Two indexed reads instead of one OR over every answer ever stored: answers flagged by the service
    (not covered, unsupported claims, extractive tier) since the newest grouped question, and 👎 ratings,
    which can arrive on an answer of any age (the feedback table is small and indexed by rating).
    """
    question = aliased(Message)
    flagged = or_(
        Message.unanswered.is_(True),
        Message.unsupported_claims > 0,
        Message.cascade_tier.in_(extractive_tiers) if extractive_tiers else false(),
    )
    base = (
        select(
            Message.id,
            Message.created_at,
            Conversation.creator,
            question.content.label("question"),
            question.created_at.label("asked_at"),
            Message.sources,
            Message.unanswered,
            Message.unsupported_claims,
            Message.cascade_tier,
            Feedback.rating,
        )
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(question, and_(question.conversation_id == Message.conversation_id, question.seq == Message.seq - 1))
        .outerjoin(GapMember, GapMember.message_id == Message.id)
        .where(Message.status.in_(_ANSWERED), GapMember.message_id.is_(None), Conversation.deleted_at.is_(None))
    )
    async with db_errors(), sessions() as session:
        newest = await session.scalar(select(func.max(GapMember.asked_at)))
        recent = base.outerjoin(Feedback, Feedback.message_id == Message.id).where(Message.role == "assistant", flagged)
        if newest is not None:
            recent = recent.where(Message.created_at >= newest - _FLAG_SLACK)
        # Driven from the ratings (only answers carry one): no role filter, which would make the planner walk
        # every answer by the role index instead (1 s at 100k turns on SQLite, 40 ms this way).
        disliked = base.join(Feedback, Feedback.message_id == Message.id).where(Feedback.rating == "down")
        rows = {}
        for query in (recent, disliked):
            for row in (await session.execute(query.order_by(Message.created_at, Message.id).limit(limit))).all():
                rows[row.id] = row
    ordered = sorted(rows.values(), key=lambda row: (row.created_at, row.id))[:limit]
    return [
        GapTurn(
            row.id, row.creator, row.question, row.asked_at, list(row.sources or []), _signals(row, extractive_tiers)
        )
        for row in ordered
    ]


def _signals(row: Any, extractive_tiers: list[str]) -> tuple[str, ...]:
    signals = []
    if row.unanswered:
        signals.append("unanswered")
    if row.unsupported_claims:
        signals.append("unsupported")
    if row.rating == "down":
        signals.append("thumbs_down")
    if row.cascade_tier in extractive_tiers:
        signals.append("extractive")
    return tuple(signals)


async def load_topics(sessions: Sessions, *, creators: set[str | None]) -> list[TopicState]:
    """Every topic (open or resolved) of these creators: a resolved topic still catches its questions."""
    named = [creator for creator in creators if creator is not None]
    scope = or_(GapTopic.creator.in_(named), GapTopic.creator.is_(None) if None in creators else false())
    async with db_errors(), sessions() as session:
        topics = list(await session.scalars(select(GapTopic).where(scope)))
    return [
        TopicState(
            id=t.id,
            creator=t.creator,
            label=t.label,
            centroid=list(t.centroid),
            count=t.count,
            first_seen=t.first_seen,
            last_seen=t.last_seen,
            examples=list(t.examples),
            sources=list(t.sources),
            signals=dict(t.signals),
            resolved_at=t.resolved_at,
            answered_by=t.answered_by,
            answered_at=t.answered_at,
        )
        for t in topics
    ]


async def save_topics(sessions: Sessions, topics: list[TopicState]) -> bool:
    """Write the topics a refresh touched and their new members in one transaction; False (nothing written)
    when another process grouped some of these answers first (their membership rows collide)."""
    try:
        await _save_topics(sessions, topics)
    except IntegrityError:
        log.info("another process grouped these gap answers first; this refresh stops here")
        return False
    return True


async def _save_topics(sessions: Sessions, topics: list[TopicState]) -> None:
    async with db_errors(), sessions() as session, session.begin():
        for topic in topics:
            values = {
                "creator": topic.creator, "label": topic.label, "centroid": topic.centroid, "count": topic.count,
                "first_seen": topic.first_seen, "last_seen": topic.last_seen, "examples": topic.examples,
                "sources": topic.sources, "signals": topic.signals, "resolved_at": topic.resolved_at,
                "answered_by": topic.answered_by, "answered_at": topic.answered_at,
            }  # fmt: skip
            if topic.new:
                session.add(GapTopic(id=topic.id, **values))
            else:
                await session.execute(
                    update(GapTopic).where(GapTopic.id == topic.id).values(**values)
                    .execution_options(synchronize_session=False)
                )  # fmt: skip
        await session.flush()
        for topic in topics:
            for message_id, asked_at in topic.members or []:
                session.add(GapMember(message_id=message_id, topic_id=topic.id, asked_at=asked_at))


def new_topic_id() -> str:
    return new_id()


async def ingests_since(sessions: Sessions, moments: list[datetime]) -> dict[datetime, datetime | None]:
    """For each moment, when the first successful (non-dry) ingest after it finished; None when none yet."""
    answer: dict[datetime, datetime | None] = {}
    async with db_errors(), sessions() as session:
        for moment in set(moments):
            answer[moment] = await session.scalar(
                select(func.min(IngestRun.finished_at)).where(
                    IngestRun.finished_at > moment, IngestRun.ok.is_(True), IngestRun.dry_run.is_(False)
                )
            )
    return answer


def _view(topic: GapTopic, count: int | None = None) -> TopicView:
    return TopicView(
        id=topic.id, creator=topic.creator, label=topic.label, count=topic.count if count is None else count,
        first_seen=topic.first_seen, last_seen=topic.last_seen, examples=list(topic.examples),
        sources=list(topic.sources), signals=dict(topic.signals), resolved_at=topic.resolved_at,
        answered_by=topic.answered_by,
    )  # fmt: skip


async def list_topics(
    sessions: Sessions,
    *,
    creator: str | None = None,
    since: datetime | None = None,
    include_resolved: bool = False,
    limit: int = 200,
) -> list[TopicView]:
    """Gap topics, most frequent first; with `since`, counted and filtered over questions asked since then."""
    query = select(GapTopic).options(defer(GapTopic.centroid))  # 384 floats a topic, not shown
    if creator is not None:
        query = query.where(GapTopic.creator == creator)
    if not include_resolved:  # nor answered: a curated answer serves those questions now
        query = query.where(GapTopic.resolved_at.is_(None), GapTopic.answered_at.is_(None))
    async with db_errors(), sessions() as session:
        if since is None:
            topics = await session.scalars(
                query.order_by(GapTopic.count.desc(), GapTopic.last_seen.desc()).limit(limit)
            )
            return [_view(topic) for topic in topics]
        recent = (
            select(GapMember.topic_id, func.count().label("recent"))
            .where(GapMember.asked_at >= since)
            .group_by(GapMember.topic_id)
            .subquery()
        )
        rows = (
            await session.execute(
                query.add_columns(recent.c.recent)
                .join(recent, recent.c.topic_id == GapTopic.id)
                .order_by(recent.c.recent.desc(), GapTopic.last_seen.desc())
                .limit(limit)
            )
        ).all()
        return [_view(row[0], int(row[1])) for row in rows]


async def resolve_topic(sessions: Sessions, *, topic_id: str, when: datetime) -> bool:
    if not is_valid_id(topic_id):  # never looked up (backend/ids.py): a NUL would be a database error on PostgreSQL
        return False
    async with db_errors(), sessions() as session, session.begin():
        result = await session.execute(
            update(GapTopic).where(GapTopic.id == topic_id).values(resolved_at=when)
            .execution_options(synchronize_session=False)
        )  # fmt: skip
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def get_topic(sessions: Sessions, *, topic_id: str) -> TopicView | None:
    """One topic (its examples prefill a curated answer written for it)."""
    if not is_valid_id(topic_id):
        return None
    async with db_errors(), sessions() as session:
        topic = await session.get(GapTopic, topic_id, options=[defer(GapTopic.centroid)])
        return _view(topic) if topic is not None else None
