"""The chat stream's event vocabulary. frontend/src/events.ts is its TypeScript twin (checked by a test).

`ChatService.run(turn, sink)` sends these models (a union told apart by `type`, as onyx's streaming models are)
into an `EventSink`; `frame` is the one place that turns them into SSE bytes, at the edge (the API route). On the
wire the type is the `event:` line and `data:` is the rest of the model as one JSON line (`sources` carries a bare
array).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Protocol

import orjson
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
    text: str  # the whole source text: citation quotes are character offsets into it


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


class Quote(_Event):
    """Where a sentence's support was found: source number and character offsets into that source's text."""

    source: int
    start: int
    end: int


class Citation(_Event):
    """The claim check (grounding/claim_check.py) of one answer sentence: its span in the answer, the [n] it cites, the
    best supporting quote, and whether the cited sources state it (framing is not a claim)."""

    start: int
    end: int
    sources: list[int]
    quote: Quote | None
    supported: bool
    score: float
    claim: bool
    verified: bool = False  # a curator wrote it: a sentence of a curated answer (its sources back it, or the curator)


class CuratedAnswerRef(_Event):
    """The curated answer a turn was answered with (backend/curation/answers.py), as it stood when served."""

    id: str
    version: int


class DoneEvent(_Event):
    type: Literal["done"] = "done"
    conversation_id: str
    message_id: str
    cascade_tier: str
    skipped: list[SkippedTier]  # the tiers before cascade_tier, in order, and why each did not answer
    finish_reason: str  # "stop", "length", or "stopped" when the visitor stopped it
    search_query: str
    usage: Usage
    citations: list[Citation] = []  # one per answer sentence, in order
    unanswered: bool = False  # the sources did not cover the question: the answer said so
    curated_answer: CuratedAnswerRef | None = None  # set when cascade_tier is "curated"
    suggestions: list[str] = []  # follow-up questions the sources can answer and the visitor has not asked (≤ 3)
    trace_id: str | None = None  # the turn's OpenTelemetry trace (32 hex digits); null when tracing is off


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    code: str
    message: str
    retryable: bool
    request_id: str | None = None


StreamEvent = Annotated[SourcesEvent | TokenEvent | DoneEvent | ErrorEvent, Field(discriminator="type")]


class EventSink(Protocol):
    """Where a turn's events go: the HTTP response (event_stream.py) or the terminal (ask.py).

    Text has its own method so the hot path, one call per network read of the upstream, builds no model;
    a sink that wants `TokenEvent`s makes them itself."""

    async def send(self, event: SourcesEvent | DoneEvent | ErrorEvent) -> None: ...

    async def send_text(self, text: str) -> None: ...

    def detach(self) -> None:
        """The reader is gone (it left, or stopped reading): later events must not wait for it."""


def frame(event: StreamEvent, event_id: int) -> bytes:
    """One SSE frame. `data` is always a single JSON line, so text can never forge framing (I6)."""
    if isinstance(event, TokenEvent):
        return token_frame(event.text, event_id)
    if isinstance(event, SourcesEvent):  # `sources` carries a bare JSON array
        data = "[" + ",".join(source.model_dump_json() for source in event.sources) + "]"
    else:
        data = event.model_dump_json(exclude={"type"})
    return f"id: {event_id}\nevent: {event.type}\ndata: {data}\n\n".encode()


_TOKEN_HEAD = b'\nevent: token\ndata: {"text":'


def token_frame(text: str, event_id: int) -> bytes:
    """A `token` frame from precomputed bytes: orjson escapes every control character, so the data stays one
    line (I6), and the result is byte-for-byte what `frame(TokenEvent(text=text))` gives."""
    return b"id: " + str(event_id).encode() + _TOKEN_HEAD + orjson.dumps(text) + b"}\n\n"
