"""POST /api/v1/chat: validate, limit, prepare the turn, then stream it as server-sent events."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from itertools import count
from typing import Any

import anyio
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from backend.api.deps import (
    CatalogDep,
    ChatDep,
    ClientIpDep,
    LimiterDep,
    OwnerDep,
    RunningDep,
    SettingsDep,
    SlotsDep,
)
from backend.chat.events import StreamEvent, frame
from backend.chat.running import RunningTurns
from backend.chat.service import PreparedTurn, TurnRequest
from backend.errors import ErrorCode, LorechatError
from backend.storage.cleaning import clean_text
from backend.storage.models import ID_PATTERN

router = APIRouter(tags=["chat"])

# On SIGTERM a running answer is stopped at once and given this long to store itself and send its error.
SHUTDOWN_GRACE_SECONDS = 5.0
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ChatRequest(BaseModel):
    # Strict: "0.5", true or "1" for a number is a client bug to report (422), not a value to guess (I2).
    model_config = ConfigDict(extra="forbid", strict=True)

    query: str = Field(min_length=1, max_length=1000, description="The visitor's question.")
    creator: str | None = Field(None, pattern=SLUG_PATTERN, description="Scope retrieval to one creator.")
    conversation_id: str | None = Field(None, min_length=8, max_length=64, pattern=ID_PATTERN)
    personality_weight: float = Field(0.0, ge=0.0, le=1.0, description="0 neutral voice … 1 the creator's own.")

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
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "sources, token…, then done or error"},
        404: {"description": "Unknown creator or conversation"},
        409: {"description": "An answer is already streaming in this conversation"},
        413: {"description": "Body too large"},
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
    running: RunningDep,
) -> EventSourceResponse:
    creator = None
    if body.creator is not None:
        creator = catalog.creator(body.creator)
        if creator is None:
            raise LorechatError(ErrorCode.unknown_creator, f"Unknown creator '{body.creator}'")
    await limiter.check(user_id=owner, client_ip=ip, creator=body.creator)
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

    async def on_close() -> None:
        await slots.release(slot)
        await chat.abandon(turn)

    return ChatStreamResponse(
        sse_frames(chat.stream(turn)),
        on_close=on_close,
        ping=settings.server.keepalive_seconds,
        # LF like every event (events.frame); sse-starlette's default is CRLF, which mixed endings in one stream.
        sep="\n",
        ping_message_factory=lambda: ServerSentEvent(comment="keepalive", sep="\n"),
        send_timeout=settings.server.send_timeout_seconds,
        headers=_stream_headers(turn),
        shutdown_event=_StopOnShutdown(running, turn.conversation_id),
        shutdown_grace_period=SHUTDOWN_GRACE_SECONDS,
    )


async def sse_frames(events: AsyncGenerator[StreamEvent, None]) -> AsyncIterator[bytes]:
    """The turn's events as SSE frames, numbered 1, 2, 3… (the stream's one framing place)."""
    ids = count(1)
    try:
        async for event in events:
            yield frame(event, next(ids))
    finally:
        # Closed by the server (visitor gone, send timeout): close the turn's stream now, so its shielded
        # cleanup stores the partial answer at once rather than whenever the generator is collected (D2).
        await events.aclose()


def _stream_headers(turn: PreparedTurn) -> dict[str, str]:
    return {
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
        # Known before the first event, so the widget can stop a turn even before `done` names it.
        "X-Conversation-Id": turn.conversation_id,
    }


class ChatStreamResponse(EventSourceResponse):
    """Runs `on_close` however the response ends, even if the stream never started (client gone at once)."""

    def __init__(self, *args: Any, on_close: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._on_close()


class _StopOnShutdown:
    """Stands in for sse-starlette's shutdown event, which it only ever `set()`s: on server shutdown the turn
    is stopped with reason "shutdown", so it stores its partial answer and ends with a retryable error (F12)."""

    def __init__(self, running: RunningTurns, conversation_id: str) -> None:
        self._running = running
        self._conversation_id = conversation_id

    def set(self) -> None:
        self._running.stop(self._conversation_id, reason="shutdown")
