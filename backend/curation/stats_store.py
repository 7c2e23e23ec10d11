"""Dashboard analytics in SQL: questions per day, answers per tier, TTFT p50, feedback counts.

Each is one indexed query over a time window (ix_messages_role_created), so the dashboard stays fast with
hundreds of thousands of stored turns (scripts/bench/curator measures it).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.storage.models import Conversation, Feedback, Message
from backend.storage.records import MessageStatus
from backend.storage.repository import Sessions, db_errors

TTFT_SAMPLE = 5000


@dataclass(frozen=True, slots=True)
class DayCount:
    day: str
    questions: int


@dataclass(frozen=True, slots=True)
class TierCount:
    tier: str
    status: str
    answers: int


@dataclass(frozen=True, slots=True)
class FeedbackCount:
    creator: str | None
    up: int
    down: int


def _day(session: AsyncSession) -> ColumnElement[Any]:
    """The UTC day of a message: a date on PostgreSQL (cheaper to group by than to_char), text on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", Message.created_at))
    return func.substr(Message.created_at, 1, 10)  # SQLite stores naive UTC as "YYYY-MM-DD HH:MM:SS…"


async def questions_per_day(sessions: Sessions, *, since: datetime) -> list[DayCount]:
    async with db_errors(), sessions() as session:
        day = _day(session).label("day")
        rows = await session.execute(
            select(day, func.count())
            .where(Message.role == "user", Message.created_at >= since)
            .group_by(day)
            .order_by(day)
        )
        return [DayCount(str(d), int(n)) for d, n in rows.all()]


async def answers_per_tier(sessions: Sessions, *, since: datetime) -> list[TierCount]:
    async with db_errors(), sessions() as session:
        rows = await session.execute(
            select(Message.cascade_tier, Message.status, func.count())
            .where(Message.role == "assistant", Message.created_at >= since, Message.status != MessageStatus.streaming)
            .group_by(Message.cascade_tier, Message.status)
            .order_by(func.count().desc())
        )
        return [TierCount(tier or "—", str(status), int(n)) for tier, status, n in rows.all()]


async def ttft_p50_ms(sessions: Sessions, *, since: datetime, last: int = TTFT_SAMPLE) -> int | None:
    """The median time to first token of the `last` timed answers since then (None when none was timed).

    A recent sample, read backwards along the (role, created_at) index: the figure a curator watches moves
    with the last few thousand answers, and the cost stays flat however many turns are stored.
    """
    async with db_errors(), sessions() as session:
        sample = list(
            await session.scalars(
                select(Message.ttft_ms)
                .where(Message.role == "assistant", Message.created_at >= since, Message.ttft_ms.is_not(None))
                .order_by(Message.created_at.desc())
                .limit(last)
            )
        )
    if not sample:
        return None
    return int(statistics.median_low(value for value in sample if value is not None))


async def feedback_counts(sessions: Sessions, *, since: datetime) -> list[FeedbackCount]:
    """👍/👎 per creator (None: unscoped questions), from ratings given or changed since then."""
    up = func.sum(case((Feedback.rating == "up", 1), else_=0))
    down = func.sum(case((Feedback.rating == "down", 1), else_=0))
    async with db_errors(), sessions() as session:
        rows = await session.execute(
            select(Conversation.creator, up, down)
            .select_from(Feedback)
            .join(Message, Message.id == Feedback.message_id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Feedback.updated_at >= since)
            .group_by(Conversation.creator)
            .order_by(Conversation.creator)
        )
        return [FeedbackCount(creator, int(u or 0), int(d or 0)) for creator, u, d in rows.all()]
