"""POST /api/v1/chat: validate, limit, prepare the turn, then stream it as server-sent events."""

from __future__ import annotations

import re
from functools import partial

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from backend.api.deps import (
    CatalogDep,
    ChatDep,
    ClientIpDep,
    LimiterDep,
    OwnerDep,
    SessionsDep,
    SettingsDep,
    SlotsDep,
    StreamLogDep,
)
from backend.api.event_stream import TurnEventStream
from backend.chat.service import PreparedTurn, TurnRequest
from backend.errors import ErrorCode, LorechatError
from backend.sites import admit_site
from backend.storage.cleaning import clean_text
from backend.storage.models import ID_PATTERN

router = APIRouter(tags=["chat"])

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ChatRequest(BaseModel):
    # Strict: "0.5", true or "1" for a number is a client bug to report (422), not a value to guess (I2).
    model_config = ConfigDict(extra="forbid", strict=True)

    query: str = Field(min_length=1, max_length=1000, description="The visitor's question.")
    creator: str | None = Field(None, pattern=SLUG_PATTERN, description="Scope retrieval to one creator.")
    conversation_id: str | None = Field(None, min_length=8, max_length=64, pattern=ID_PATTERN)
    personality_weight: float = Field(0.0, ge=0.0, le=1.0, description="0 neutral voice … 1 the creator's own.")
    site: str | None = Field(None, pattern=SLUG_PATTERN, description="The registered site embedding the widget.")

    @field_validator("query")
    @classmethod
    def _clean_query(cls, value: str) -> str:
        # NUL bytes and lone surrogates cannot be stored (I4); other control characters carry nothing.
        cleaned = _CONTROL.sub("", clean_text(value)).strip()
        if not cleaned:
            raise ValueError("query must contain some text")
        return cleaned


@router.post(
    "/api/v1/chat",
    response_class=TurnEventStream,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "sources, token…, then done or error"},
        404: {"description": "Unknown creator or conversation"},
        409: {"description": "An answer is already streaming in this conversation"},
        413: {"description": "Body too large"},
        403: {"description": "The named site may not be used from this origin or for this creator"},
        422: {"description": "Invalid request"},
        429: {"description": "Rate limited (Retry-After)"},
        503: {"description": "A dependency is unavailable (Retry-After)"},
    },
)
async def chat(
    body: ChatRequest,
    request: Request,
    chat: ChatDep,
    catalog: CatalogDep,
    limiter: LimiterDep,
    slots: SlotsDep,
    owner: OwnerDep,
    ip: ClientIpDep,
    settings: SettingsDep,
    sessions: SessionsDep,
    stream_log: StreamLogDep,
) -> TurnEventStream:
    creator = None
    if body.creator is not None:
        creator = catalog.creator(body.creator)
        if creator is None:
            raise LorechatError(ErrorCode.unknown_creator, f"Unknown creator '{body.creator}'")
    await limiter.check(user_id=owner, client_ip=ip, creator=body.creator)
    # Origin, creators and daily budget of the named site (403 / 429), counted per site: backend/sites.py.
    await admit_site(sessions, settings, site=body.site, origin=request.headers.get("origin"), creator=body.creator)
    slot = await slots.acquire(ip)
    try:
        turn = await chat.prepare(
            TurnRequest(
                question=body.query,
                creator=creator,
                conversation_id=body.conversation_id,
                personality_weight=body.personality_weight,
                owner_id=owner,
                request_id=request.state.request_id,
            )
        )
    except BaseException:
        await slots.release(slot)
        raise

    handed_over = False

    async def on_detach() -> bool:
        # The visitor left a resumable answer: their stream slot is free for the reconnect, and the answer goes
        # on unattended, as long as the IP does not already have as many unattended as it may have streams.
        nonlocal handed_over
        handed_over = await slots.hand_over(slot)
        return handed_over

    async def on_close() -> None:
        if handed_over:
            slots.unattended_ended(slot)
        else:
            await slots.release(slot)
        await chat.abandon(turn)

    return TurnEventStream(
        partial(chat.run, turn),
        on_close=on_close,
        headers=_stream_headers(turn),
        keepalive_seconds=settings.server.keepalive_seconds,
        # Resumable: every event also goes to the log, and a visitor who leaves does not end the answer.
        log=stream_log.open(turn.conversation_id, turn.assistant_message_id) if stream_log is not None else None,
        on_detach=on_detach,
    )


def _stream_headers(turn: PreparedTurn) -> dict[str, str]:
    return {
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
        # Known before the first event, so the widget can stop a turn even before `done` names it.
        "X-Conversation-Id": turn.conversation_id,
    }
