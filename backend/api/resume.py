"""GET /api/v1/conversations/{id}/stream: resume the conversation's latest answer stream on any replica.

The client sends the id of the last event it read as `Last-Event-ID` (the SSE reconnection header; none or 0
replays from the start). It gets the events after it, byte-for-byte as first sent (same ids), then follows the
turn live until `done` or `error`; once the turn ended, the replay ends at once. Policy:
- 404 `not_found`: the conversation is not visible to this caller (the same rule as reading it), or no stream
  is kept for it (none ran, or it ended more than `server.resume_seconds` ago: read the conversation instead);
- 409 `resume_unavailable`: this deployment keeps no streams (no Redis, or `server.resume_seconds: 0`);
- 503 `stream_log_unavailable`: Redis did not answer;
- in the stream, a retryable `error` when the turn can no longer finish (its process died and a peer reaped the
  answer) or part of the log is gone; the client then reads the conversation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from backend.api.deps import ClientIpDep, ConversationIdDep, OwnerDep, SessionsDep, SettingsDep, SlotsDep, StreamLogDep
from backend.errors import ErrorCode, LorechatError
from backend.storage import repository
from backend.storage.records import MessageStatus
from backend.stream.event_stream import KEEPALIVE
from backend.stream.stream_log import MAX_BLOCK_SECONDS

log = logging.getLogger(__name__)

router = APIRouter(tags=["chat"])


@router.get(
    "/api/v1/conversations/{conversation_id}/stream",
    response_class=Response,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "the events after Last-Event-ID, then live"},
        204: {"description": "Last-Event-ID is the answer's last event (or past it): nothing more will come"},
        404: {"description": "Unknown conversation, or no stream kept for it"},
        409: {"description": "This deployment keeps no streams (no Redis)"},
        422: {"description": "Last-Event-ID is not a non-negative integer"},
        429: {"description": "Too many streams from this address"},
        503: {"description": "The stream log is unavailable (Retry-After)"},
    },
)
async def resume_stream(
    conversation_id: ConversationIdDep,
    request: Request,
    sessions: SessionsDep,
    owner: OwnerDep,
    stream_log: StreamLogDep,
    slots: SlotsDep,
    ip: ClientIpDep,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> Response:
    after = _parse_last_event_id(last_event_id)
    if not await repository.conversation_visible(sessions, conversation_id=conversation_id, owner_id=owner):
        raise LorechatError(ErrorCode.not_found, "Conversation not found")
    if stream_log is None:
        raise LorechatError(
            ErrorCode.resume_unavailable,
            "This service does not keep answer streams; read the conversation instead.",
        )
    message_id = await stream_log.latest(conversation_id)
    if message_id is None:
        raise LorechatError(ErrorCode.not_found, "No answer stream is kept for this conversation; read it instead.")

    end = await stream_log.end_id(message_id)
    if end is not None and after >= end:
        # The client already has the whole answer, its `done` or `error` included: nothing to wait for. 204 is
        # what tells an EventSource to stop reconnecting (the SSE spec).
        return Response(status_code=204, headers={"X-Conversation-Id": conversation_id})

    async def still_streaming() -> bool:
        try:
            status = await repository.assistant_status(sessions, assistant_message_id=message_id)
        except LorechatError:
            return True  # the database is away: not a reason to end a live replay
        return status == MessageStatus.streaming

    slot = await slots.acquire(ip)
    keepalive = settings.server.keepalive_seconds
    frames = stream_log.follow(
        message_id,
        after=after,
        block_seconds=min(keepalive, MAX_BLOCK_SECONDS),
        still_streaming=still_streaming,
        request_id=request.state.request_id,
    )
    return ReplayStream(
        frames,
        on_close=lambda: slots.release(slot),
        keepalive_seconds=keepalive,
        send_timeout_seconds=settings.server.send_timeout_seconds,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Conversation-Id": conversation_id},
    )


def _parse_last_event_id(value: str | None) -> int:
    if value is None or value.strip() == "":
        return 0
    text = value.strip()
    if not text.isascii() or not text.isdigit():
        raise LorechatError(ErrorCode.invalid_input, "Last-Event-ID must be the id of an event of this stream")
    return int(text)


class ReplayStream(Response):
    """Writes the replayed and live frames; ends when they end, the client leaves, or stops reading."""

    media_type = "text/event-stream"

    def __init__(
        self,
        frames: AsyncIterator[bytes | None],
        *,
        on_close: Callable[[], Awaitable[None]],
        keepalive_seconds: float,
        send_timeout_seconds: float,
        headers: dict[str, str],
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers(headers)
        self._frames = frames
        self._on_close = on_close
        self._keepalive = keepalive_seconds
        self._send_timeout = send_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async with anyio.create_task_group() as group:
                group.start_soon(_until_disconnect, receive, group.cancel_scope)
                await self._relay(send)
                group.cancel_scope.cancel()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (OSError, TimeoutError):
            log.debug("resumed stream: client gone or not reading")
        finally:
            with anyio.CancelScope(shield=True):
                await _close(self._frames)
                await self._on_close()

    async def _relay(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        last_write = loop.time()
        async for body in self._frames:
            if body is None:  # the log was quiet for a while
                if loop.time() - last_write < self._keepalive:
                    continue
                body = KEEPALIVE
            async with asyncio.timeout(self._send_timeout):  # a reader that stopped reading is dropped (L3)
                await send({"type": "http.response.body", "body": body, "more_body": True})
            last_write = loop.time()


async def _until_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


async def _close(frames: AsyncIterator[bytes | None]) -> None:
    close = getattr(frames, "aclose", None)
    if close is not None:
        await close()
