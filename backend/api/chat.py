"""POST /api/v1/chat: validate, limit, prepare the turn, then stream it as server-sent events.

A plain ASGI route, not a FastAPI one: a stream lives for minutes, and FastAPI's request handling (its routing
layers, the solved dependencies, three exit stacks) would stay alive, suspended, under every open stream. The
route still sits behind every middleware and the app's exception handlers, so its errors keep the one JSON shape
(api/errors.py), and `document` puts it in the OpenAPI schema as FastAPI would.
"""

from __future__ import annotations

import email.message
import json
import re
from functools import partial
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from backend import tracing
from backend.api.deps import (
    catalog_of,
    chat_of,
    client_ip_of,
    limiter_of,
    owner_of,
    sessions_of,
    settings_of,
    slots_of,
    stream_log_of,
)
from backend.chat.service import PreparedTurn, TurnRequest
from backend.curation.sites import admit_site
from backend.errors import ErrorCode, LorechatError
from backend.ids import ID_PATTERN, SLUG_PATTERN
from backend.stages import Creator
from backend.storage.cleaning import clean_text
from backend.stream.event_stream import TurnEventStream

PATH = "/api/v1/chat"
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
        return clean_question(value, field="query")


def clean_question(value: str, *, field: str) -> str:
    """A question as it may be stored: NUL bytes and lone surrogates cannot be (I4); other control characters carry
    nothing. ValueError (a 422 naming `field`) when no text is left. The MCP server's `ask` cleans alike."""
    cleaned = _CONTROL.sub("", clean_text(value)).strip()
    if not cleaned:
        raise ValueError(f"{field} must contain some text")
    return cleaned


RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "sources, token…, then done or error"},
    404: {"description": "Unknown creator or conversation"},
    409: {"description": "An answer is already streaming in this conversation"},
    413: {"description": "Body too large"},
    403: {"description": "The named site may not be used from this origin or for this creator"},
    422: {"description": "Invalid request"},
    429: {"description": "Rate limited (Retry-After)"},
    503: {"description": "A dependency is unavailable (Retry-After)"},
}


class ChatRoute(Route):
    """The chat route; names itself in the scope as FastAPI's routes do (the request metrics read it)."""

    def __init__(self) -> None:
        super().__init__(PATH, endpoint=chat, methods=["POST"], name="chat")
        self.app = chat  # the endpoint is an ASGI app itself, not a function of a Request (Starlette's reading)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


async def chat(scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope, receive)
    body = await read_chat_request(request)
    stream = await start_stream(request, body)
    await stream(scope, receive, send)


async def read_chat_request(request: Request) -> ChatRequest:
    """The body as FastAPI reads one (JSON when the type says so or says nothing), refused with the same 422s."""
    raw = await request.body()
    content_type = request.headers.get("content-type")
    if content_type and not _is_json(content_type):
        expected = "expected a JSON body (Content-Type: application/json)"
        raise _invalid({"type": "model_attributes_type", "loc": ("body",), "msg": expected})
    try:
        data = json.loads(raw)
    except ValueError as exc:  # bad JSON or bad UTF-8
        raise _invalid({"type": "json_invalid", "loc": ("body",), "msg": f"JSON decode error: {exc}"}) from None
    except RecursionError:  # thousands of nested arrays or objects: the decoder's own bound, a 422 like bad JSON (I3)
        raise _invalid({"type": "json_invalid", "loc": ("body",), "msg": "JSON nested too deeply"}) from None
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None


def _is_json(content_type: str) -> bool:
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def _invalid(error: dict[str, Any]) -> RequestValidationError:
    return RequestValidationError([{**error, "input": None}])


async def admit_question(request: Request, *, owner: str | None, ip: str, creator: str | None) -> Creator | None:
    """Every question's admission before its site rule (the chat route's and the MCP tools'): the creator named
    must exist (404 unknown_creator), then the rate limits per user, IP and creator (429). Returns the creator."""
    found = None
    if creator is not None:
        found = (await catalog_of(request)).creator(creator)
        if found is None:
            raise LorechatError(ErrorCode.unknown_creator, f"Unknown creator '{creator}'")
    with tracing.span("rate limits"):
        await limiter_of(request).check(user_id=owner, client_ip=ip, creator=creator)
    return found


async def start_stream(request: Request, body: ChatRequest) -> TurnEventStream:
    """Admits the turn (creator, limits, site, stream slot), prepares it, and returns its response."""
    settings, chat, slots = settings_of(request), chat_of(request), slots_of(request)
    # The turn's trace (backend/tracing.py; nothing when tracing is off): admission, then prepare and run's phases.
    trace = tracing.start_turn(surface="api", creator=body.creator, question=body.query)
    try:
        with trace.phase("admission"):
            owner, ip = await owner_of(request), client_ip_of(request)
            creator = await admit_question(request, owner=owner, ip=ip, creator=body.creator)
            # Origin, creators and daily budget of the named site (403 / 429), counted per site: curation/sites.py.
            await admit_site(
                sessions_of(request),
                settings,
                site=body.site,
                origin=request.headers.get("origin"),
                creator=body.creator,
            )
            with tracing.span("stream slot"):
                slot = await slots.acquire(ip)
    except BaseException as exc:
        trace.failed(exc)
        raise
    try:
        with trace.current():
            turn = await chat.prepare(
                TurnRequest(
                    question=body.query,
                    creator=creator,
                    conversation_id=body.conversation_id,
                    personality_weight=body.personality_weight,
                    owner_id=owner,
                    request_id=request.state.request_id,
                    trace=trace,
                )
            )
    except BaseException as exc:
        await slots.release(slot)
        trace.failed(exc)
        raise

    handed_over = False
    stream_log = stream_log_of(request)

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


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """Adds the chat route to the app's OpenAPI schema, as FastAPI would describe it."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ChatRequest"] = ChatRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schema["paths"][PATH] = {
        "post": {
            "tags": ["chat"],
            "summary": "Chat",
            "description": "Ask a question; the answer streams as server-sent events.",
            "operationId": "chat",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatRequest"}}},
            },
            "responses": {str(status): response for status, response in RESPONSES.items()},
        }
    }
    return schema
