"""The MCP tools: search_knowledge, ask and list_creators, each admitted like a chat request.

`ask` is a chat turn: the same admission as POST /api/v1/chat (creator, rate limits per user/IP/creator, the
site's creators and budget, a stream slot), then `ChatService.prepare` and `run` into a sink that collects the
events (as `lorechat ask` renders them), so the turn is stored, remembered and traced exactly like the widget's.
`search_knowledge` is a search through the turns' own gate (bounded, bursts refused), counted against the same
limits and budget. Whatever a caller may not see (another site's creators) is neither searched nor listed.

Errors are tool results marked `isError`, the text a JSON object `{"error": {code, message, retryable,
retry_after?}}` (the API's error body), so an agent reads why and when to retry: bad arguments (invalid_input,
naming the fields), unknown creators, limits (rate_limited… with `retry_after` seconds), a busy index.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.requests import Request

from backend import tracing
from backend.api.chat import admit_question, clean_question
from backend.api.deps import catalog_of, chat_of, sessions_of, settings_of, slots_of
from backend.chat.service import TurnRequest
from backend.curation.sites import spend_site_budget
from backend.errors import ErrorCode, LorechatError
from backend.ids import SLUG_PATTERN
from backend.mcp.auth import Caller
from backend.retrieval.search import snippet
from backend.stages import Creator, Hit, format_timestamp
from backend.storage.models import ID_PATTERN
from backend.stream.events import DoneEvent, ErrorEvent, Source, SourcesEvent


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SearchArgs(_Args):
    query: str = Field(min_length=1, max_length=1000, description="What to look for, in plain words.")
    creator: str | None = Field(None, pattern=SLUG_PATTERN, description="Search one creator only (a slug).")
    k: int = Field(5, ge=1, le=100, description="How many hits (at most mcp.max_results).")

    @field_validator("query")
    @classmethod
    def _clean(cls, value: str) -> str:
        return clean_question(value, field="query")


class AskArgs(_Args):
    question: str = Field(min_length=1, max_length=1000, description="The question, as a visitor would ask it.")
    creator: str | None = Field(None, pattern=SLUG_PATTERN, description="Ask one creator's content (a slug).")
    conversation_id: str | None = Field(
        None, min_length=8, max_length=64, pattern=ID_PATTERN, description="Continue this conversation."
    )

    @field_validator("question")
    @classmethod
    def _clean(cls, value: str) -> str:
        return clean_question(value, field="question")


class ListArgs(_Args):
    pass


TOOLS: dict[str, tuple[type[_Args], str]] = {
    "search_knowledge": (
        SearchArgs,
        "Search the creators' content (articles, pages, transcripts). Returns the best passages, each with its "
        "title, URL (at the moment it is said, for transcripts), creator and a snippet.",
    ),
    "ask": (
        AskArgs,
        "Ask a question answered from the creators' content only. Returns the answer with numbered citations, "
        "each claim's verdict (is it supported by the cited source), the sources, the model tier that answered and "
        "the conversation id to continue with.",
    ),
    "list_creators": (ListArgs, "The creators whose content can be searched and asked, with what each has."),
}


def input_schema(args: type[_Args]) -> dict[str, Any]:
    schema = args.model_json_schema()
    schema.pop("title", None)
    return schema


def parse(name: str, arguments: dict[str, Any] | None) -> _Args:
    """The tool's arguments, validated; invalid_input naming each bad field (never echoing its value)."""
    model, _ = TOOLS[name]
    try:
        return model.model_validate(arguments or {})
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'arguments'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise LorechatError(ErrorCode.invalid_input, f"Invalid arguments ({fields})") from None


async def search_knowledge(request: Request, caller: Caller, args: SearchArgs) -> dict[str, Any]:
    settings = settings_of(request)
    creator = await _admit(request, caller, args.creator)
    k = min(args.k, settings.mcp.max_results)
    with tracing.span("search knowledge", {tracing.SURFACE: "mcp", tracing.QUESTION_CHARS: len(args.query)}):
        hits = await chat_of(request).search(args.query, creator=creator.slug if creator else None, k=k)
    return {"hits": [_hit(rank, hit, settings.retrieval.snippet_chars) for rank, hit in enumerate(hits, start=1)]}


async def ask(request: Request, caller: Caller, args: AskArgs) -> dict[str, Any]:
    """One chat turn, admitted and run as POST /api/v1/chat runs it, its events collected."""
    chat, slots = chat_of(request), slots_of(request)
    trace = tracing.start_turn(surface="mcp", creator=args.creator, question=args.question)
    try:
        with trace.phase("admission"):
            creator = await _admit(request, caller, args.creator)
            with tracing.span("stream slot"):
                slot = await slots.acquire(caller.ip)
    except BaseException as exc:
        trace.failed(exc)
        raise
    try:
        with trace.current():
            turn = await chat.prepare(
                TurnRequest(
                    question=args.question,
                    creator=creator,
                    conversation_id=args.conversation_id,
                    personality_weight=0.0,
                    owner_id=caller.owner_id,
                    request_id=getattr(request.state, "request_id", "mcp"),
                    trace=trace,
                )
            )
    except BaseException as exc:
        await slots.release(slot)
        trace.failed(exc)
        raise
    sink = CollectingSink()
    try:
        await chat.run(turn, sink)
    finally:
        await slots.release(slot)
        await chat.abandon(turn)  # nothing once the turn ran; a turn cancelled before it began is stored interrupted
    return sink.result(turn.conversation_id)


async def list_creators(request: Request, caller: Caller, args: ListArgs) -> dict[str, Any]:
    catalog = await catalog_of(request)
    return {
        "creators": [
            {
                "slug": slug,
                "name": entry.creator.name,
                "bio": entry.creator.bio,
                "documents": len(entry.documents),
                "chunks": sum(doc.chunks for doc in entry.documents.values()),
            }
            for slug, entry in sorted(catalog.creators.items())
            if caller.may_see(slug)
        ]
    }


async def _admit(request: Request, caller: Caller, slug: str | None) -> Creator | None:
    """The chat route's admission for one question: the creator, the rate limits, the site's creators and budget
    (a site key's caller), the open API's site rule (anonymous callers). Returns the creator asked, if one."""
    settings = settings_of(request)
    slug = slug or caller.default_creator()
    if slug is None and caller.site is not None and caller.site.creators:
        raise LorechatError(ErrorCode.invalid_input, "Name a creator: this site may ask only some of them")
    creator = await admit_question(request, owner=caller.owner_id, ip=caller.ip, creator=slug)
    if caller.site is not None:
        await spend_site_budget(sessions_of(request), caller.site, creator=slug)
    elif caller.owner_id is None and settings.sites.require_site:
        raise LorechatError(ErrorCode.forbidden, "This service only answers the sites registered with it")
    return creator


def timestamped(url: str | None, start_seconds: float | None) -> str | None:
    """A transcript's URL at the moment a passage starts (`#t=<seconds>`, as the widget links it)."""
    if url is None or start_seconds is None:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(fragment=f"t={int(start_seconds)}"))


def _hit(rank: int, hit: Hit, snippet_chars: int) -> dict[str, Any]:
    found: dict[str, Any] = {
        "rank": rank,
        "title": hit.title,
        "url": timestamped(hit.url, hit.start_seconds),
        "creator": hit.creator,
        "snippet": snippet(hit.text, snippet_chars),
        "score": round(hit.score, 4),
    }
    if hit.start_seconds is not None:
        found["at"] = format_timestamp(hit.start_seconds)
    return found


def _source(source: Source) -> dict[str, Any]:
    found: dict[str, Any] = {
        "index": source.index,
        "title": source.title,
        "url": timestamped(source.url, source.start_seconds),
        "creator": source.creator,
        "snippet": source.snippet,
    }
    if source.start_seconds is not None:
        found["at"] = format_timestamp(source.start_seconds)
    return found


class CollectingSink:
    """A turn's events kept for the tool's result (an EventSink, like `lorechat ask`'s terminal one)."""

    def __init__(self) -> None:
        self.sources: list[Source] = []
        self.parts: list[str] = []
        self.terminal: DoneEvent | ErrorEvent | None = None

    async def send(self, event: SourcesEvent | DoneEvent | ErrorEvent) -> None:
        if isinstance(event, SourcesEvent):
            self.sources = event.sources
        else:
            self.terminal = event

    async def send_text(self, text: str) -> None:
        self.parts.append(text)

    def detach(self) -> None:
        """Nothing to let go of: the result is read when the turn is over."""

    def result(self, conversation_id: str) -> dict[str, Any]:
        answer = "".join(self.parts)
        done = self.terminal
        if not isinstance(done, DoneEvent):
            error = done or ErrorEvent(code=ErrorCode.internal.value, message="The turn ended early", retryable=True)
            raise TurnFailed(error, conversation_id)
        texts = {source.index: source.text for source in self.sources}
        claims = []
        for citation in done.citations:
            quote = citation.quote
            claims.append(
                {
                    "text": answer[citation.start : citation.end],
                    "sources": citation.sources,
                    "claim": citation.claim,
                    "supported": citation.supported,
                    "quote": texts.get(quote.source, "")[quote.start : quote.end] if quote else None,
                }
            )
        return {
            "answer": answer,
            "conversation_id": done.conversation_id,
            "message_id": done.message_id,
            "tier": done.cascade_tier,
            "skipped": [skipped.model_dump() for skipped in done.skipped],
            "finish_reason": done.finish_reason,
            "unanswered": done.unanswered,
            "unsupported_claims": sum(1 for claim in claims if claim["claim"] and not claim["supported"]),
            "citations": claims,
            "sources": [_source(source) for source in self.sources],
            "trace_id": done.trace_id,
        }


class TurnFailed(Exception):
    """The turn streamed and then ended in an `error` event (a tier broke off, every tier failed…)."""

    def __init__(self, event: ErrorEvent, conversation_id: str) -> None:
        super().__init__(event.message)
        self.event = event
        self.conversation_id = conversation_id

    def body(self) -> dict[str, Any]:
        return {"error": {**self.event.model_dump(exclude={"type"}), "conversation_id": self.conversation_id}}


def error_text(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False)
