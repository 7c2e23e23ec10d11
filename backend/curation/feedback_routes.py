"""POST /api/v1/messages/{id}/feedback: a visitor's 👍/👎 (and a short comment) on a finished answer."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from backend.api.deps import ClientIpDep, MessageIdDep, OwnerDep, SessionsDep
from backend.curation import feedback_store
from backend.errors import ErrorCode, LorechatError
from backend.limits import RateLimiter
from backend.redis_health import RedisHealth
from backend.settings import Settings
from backend.storage.cleaning import clean_text

router = APIRouter(prefix="/api/v1/messages", tags=["feedback"])

COMMENT_CHARS = 500
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def feedback_limiter(settings: Settings, *, client: aioredis.Redis | None, health: RedisHealth) -> RateLimiter:
    """The chat limiter's machinery (Redis moving windows, the same fallback) with a budget of its own, so
    rating answers never spends a visitor's questions."""
    per_hour = settings.limits.feedback_per_hour
    limits = settings.limits.model_copy(
        update={"user_per_hour": per_hour, "ip_per_hour": per_hour, "creator_per_hour": 0}
    )
    return RateLimiter(
        settings.model_copy(update={"limits": limits}), client=client, health=health, key_prefix="lorechat-feedback"
    )


def _limiter(request: Request) -> RateLimiter:
    return request.state.feedback_limiter


FeedbackLimiterDep = Annotated[RateLimiter, Depends(_limiter)]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=COMMENT_CHARS, description="Optional, at most 500 characters.")

    @field_validator("comment")
    @classmethod
    def _clean_comment(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _CONTROL.sub("", clean_text(value)).strip() or None


class FeedbackOut(BaseModel):
    message_id: str
    rating: str
    comment: str | None
    updated_at: datetime


@router.post(
    "/{message_id}/feedback",
    response_model=FeedbackOut,
    responses={
        404: {"description": "No such answer visible to the caller"},
        422: {"description": "Invalid body, or not a finished answer"},
        429: {"description": "Rate limited (Retry-After)"},
    },
)
async def rate_answer(
    message_id: MessageIdDep,
    body: FeedbackIn,
    sessions: SessionsDep,
    owner: OwnerDep,
    ip: ClientIpDep,
    limiter: FeedbackLimiterDep,
) -> FeedbackOut:
    """Rate one answer; posting again replaces the earlier rating (idempotent per message)."""
    await limiter.check(user_id=owner, client_ip=ip, creator=None)
    stored = await feedback_store.put_feedback(
        sessions, message_id=message_id, owner_id=owner, rating=body.rating, comment=body.comment
    )
    if stored is None:
        raise LorechatError(ErrorCode.not_found, "Message not found")
    return FeedbackOut(
        message_id=stored.message_id, rating=stored.rating, comment=stored.comment, updated_at=stored.updated_at
    )
