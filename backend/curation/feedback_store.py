"""Feedback on answers: one rating (and optional comment) per answer, visible to whoever may see its conversation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select

from backend.errors import ErrorCode, LorechatError
from backend.storage.cleaning import clean_text
from backend.storage.models import Conversation, Feedback, Message, is_valid_id, utcnow
from backend.storage.records import HISTORY_STATUSES
from backend.storage.repository import Sessions, db_errors
from backend.storage.upsert import upsert


@dataclass(frozen=True, slots=True)
class FeedbackView:
    message_id: str
    rating: str
    comment: str | None
    updated_at: datetime


def visible_to(owner_id: str | None) -> ColumnElement[bool]:
    """The conversation rule of repository._visible, for a join: anonymous ones by id, owned ones by owner."""
    owner: ColumnElement[bool] = Conversation.owner_id.is_(None)
    if owner_id is not None:
        owner = or_(owner, Conversation.owner_id == owner_id)
    return and_(Conversation.deleted_at.is_(None), owner)


async def put_feedback(
    sessions: Sessions, *, message_id: str, owner_id: str | None, rating: str, comment: str | None
) -> FeedbackView | None:
    """Store (or replace) the rating of one finished answer; None when the caller cannot see that message.

    Raises invalid_input for a question or an answer that has not finished (streaming, failed, cut off).
    """
    if not is_valid_id(message_id):
        return None
    now = utcnow()
    comment = clean_text(comment).strip() or None if comment is not None else None
    async with db_errors(), sessions() as session, session.begin():
        row = (
            await session.execute(
                select(Message.role, Message.status)
                .join(Conversation, Conversation.id == Message.conversation_id)
                .where(Message.id == message_id, visible_to(owner_id))
            )
        ).first()
        if row is None:
            return None
        if row.role != "assistant" or row.status not in HISTORY_STATUSES:
            raise LorechatError(ErrorCode.invalid_input, "Only a finished answer can be rated")
        values = {"message_id": message_id, "rating": rating, "comment": comment, "created_at": now, "updated_at": now}
        await session.execute(
            upsert(
                session,
                Feedback,
                values=values,
                keys=["message_id"],
                update={"rating": rating, "comment": comment, "updated_at": now},
            )
        )
    return FeedbackView(message_id, rating, comment, now)
