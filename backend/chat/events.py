"""The chat stream's event vocabulary. frontend/src/events.ts is its TypeScript twin (checked by a test)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


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


class TokenEvent(_Event):
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
    conversation_id: str
    message_id: str
    cascade_tier: str
    skipped: list[SkippedTier]  # the tiers before cascade_tier, in order, and why each did not answer
    finish_reason: str  # "stop", "length", or "stopped" when the visitor stopped it
    search_query: str
    usage: Usage


class ErrorEvent(_Event):
    code: str
    message: str
    retryable: bool
    request_id: str | None = None


# A comment line keeps proxies and browsers from timing out an idle stream.
KEEPALIVE = ": keepalive\n\n"


def encode(name: EventName, payload: BaseModel | list[Source], event_id: int) -> str:
    """One SSE frame. `data` is always a single JSON line, so text can never forge framing (I6)."""
    if isinstance(payload, list):  # `sources` carries a bare JSON array
        data = "[" + ",".join(source.model_dump_json() for source in payload) + "]"
    else:
        data = payload.model_dump_json()
    return f"id: {event_id}\nevent: {name.value}\ndata: {data}\n\n"
