"""The chat stream's event vocabulary. frontend/src/events.ts is its TypeScript twin (checked by a test).

`ChatService.stream` yields these models (a union told apart by `type`, as onyx's streaming models are);
`frame` is the one place that turns them into SSE bytes, at the edge (the API route). On the wire the type is
the `event:` line and `data:` is the rest of the model as one JSON line (`sources` carries a bare array).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class EventName(StrEnum):
    sources = "sources"
    token = "token"
    done = "done"
    error = "error"


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(_Event):
    index: int  # 1-based; the answer cites it as [index]
    chunk_id: str
    document_id: str
    creator: str
    title: str
    url: str | None
    snippet: str
    score: float
    start_seconds: float | None
    end_seconds: float | None


class SourcesEvent(_Event):
    type: Literal["sources"] = "sources"
    sources: list[Source]


class TokenEvent(_Event):
    type: Literal["token"] = "token"
    text: str


class Usage(_Event):
    prompt_tokens: int
    completion_tokens: int


class SkippedTier(_Event):
    tier: str
    # circuit_open, starting, restarting, unavailable, busy, too_slow (could not answer in time),
    # first_token_timeout, empty, connect, timeout, status_429, status_5xx, status_4xx, stream_error, error
    reason: str


class DoneEvent(_Event):
    type: Literal["done"] = "done"
    conversation_id: str
    message_id: str
    cascade_tier: str
    skipped: list[SkippedTier]  # the tiers before cascade_tier, in order, and why each did not answer
    finish_reason: str  # "stop", "length", or "stopped" when the visitor stopped it
    search_query: str
    usage: Usage


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    code: str
    message: str
    retryable: bool
    request_id: str | None = None


StreamEvent = Annotated[SourcesEvent | TokenEvent | DoneEvent | ErrorEvent, Field(discriminator="type")]


def frame(event: StreamEvent, event_id: int) -> bytes:
    """One SSE frame. `data` is always a single JSON line, so text can never forge framing (I6)."""
    if isinstance(event, SourcesEvent):  # `sources` carries a bare JSON array
        data = "[" + ",".join(source.model_dump_json() for source in event.sources) + "]"
    else:
        data = event.model_dump_json(exclude={"type"})
    return f"id: {event_id}\nevent: {event.type}\ndata: {data}\n\n".encode()
