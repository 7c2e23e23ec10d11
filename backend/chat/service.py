"""One chat turn, end to end: `prepare` does everything that can fail as a plain HTTP error, `stream` the rest.

prepare: history (cache, then SQL) → search query → retrieval → store the question and a "streaming"
placeholder. stream: `sources` → tokens from the first tier that answers → final write → `done`, or an
`error` event once the first byte is out. No DB session is held while streaming: writes are short and the
final one is shielded from cancellation, so a visitor who leaves still gets their partial answer stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from itertools import count
from typing import Any

import anyio

from backend.chat.cascade import Cascade
from backend.chat.events import DoneEvent, ErrorEvent, EventName, SkippedTier, Source, TokenEvent, Usage, encode
from backend.chat.prompt import Prompt, build_prompt, search_query_for
from backend.chat.running import RunningTurns, TurnStop
from backend.chat.tiers.base import Tier
from backend.errors import ErrorCode, LorechatError
from backend.metrics import STREAM_SECONDS, STREAMS_ACTIVE, TIER_ANSWERS, TIME_TO_FIRST_TOKEN, TIME_TO_SOURCES
from backend.retrieval.search import Retriever, snippet
from backend.settings import Settings
from backend.stages import Creator, Hit
from backend.storage import repository
from backend.storage.cache import HistoryCache
from backend.storage.leases import Leases
from backend.storage.repository import Sessions

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TurnRequest:
    question: str
    creator: Creator | None
    conversation_id: str | None
    personality_weight: float
    owner_id: str | None
    request_id: str


@dataclass(slots=True)
class PreparedTurn:
    request: TurnRequest
    conversation_id: str
    assistant_message_id: str
    search_query: str
    history: list[tuple[str, str]]
    hits: list[Hit]
    started: float
    sources: list[Source] = field(default_factory=list)
    # Set once the body starts streaming; until then `abandon` owns the placeholder answer.
    streamed: bool = False


class ChatService:
    def __init__(
        self,
        *,
        settings: Settings,
        retriever: Retriever,
        sessions: Sessions,
        cache: HistoryCache,
        cascade: Cascade,
        running: RunningTurns,
        leases: Leases | None = None,
    ) -> None:
        self._settings = settings
        self._retriever = retriever
        self._sessions = sessions
        self._cache = cache
        self._cascade = cascade
        self._running = running
        self._leases = leases  # renewed while this process streams the turn (F13)
        self._retrying: set[asyncio.Task[None]] = set()  # final writes waiting for the database
        # Query embedding is CPU-bound: more threads than cores only makes every search slower.
        self._retrieval_slots = anyio.CapacityLimiter(settings.retrieval.max_concurrent)

    async def prepare(self, request: TurnRequest) -> PreparedTurn:
        """Everything before the first byte; failures here are HTTP errors and reach no model."""
        started = time.perf_counter()
        history = await self._history(request) if request.conversation_id else []
        search_query = search_query_for(request.question, history)
        creator_slug = request.creator.slug if request.creator else None
        hits = await self._retrieve(search_query, creator_slug)
        turn = await repository.start_turn(
            self._sessions,
            conversation_id=request.conversation_id,
            owner_id=request.owner_id,
            creator=creator_slug,
            question=request.question,
            load_history=False,
            lease_owner=self._leases.owner if self._leases is not None else None,
            lease_until=self._leases.until() if self._leases is not None else None,
        )
        if self._leases is not None:
            self._leases.hold(turn.assistant_message_id)
        prepared = PreparedTurn(
            request=request,
            conversation_id=turn.conversation_id,
            assistant_message_id=turn.assistant_message_id,
            search_query=search_query,
            history=history,
            hits=hits,
            started=started,
        )
        prepared.sources = [
            _source(index, hit, self._settings.retrieval.snippet_chars) for index, hit in enumerate(hits, start=1)
        ]
        return prepared

    async def stream(self, turn: PreparedTurn) -> AsyncIterator[bytes]:
        """The SSE body. Ends with exactly one `done` or `error` (INV-3), after the final write (INV-2)."""
        turn.streamed = True
        ids = count(1)
        parts: list[str] = []
        outcome = _Outcome()
        STREAMS_ACTIVE.inc()
        stop = TurnStop()
        self._running.register(turn.conversation_id, stop)  # the stop endpoint and shutdown reach it here
        pieces = self._generate(turn, outcome)
        try:
            yield encode(EventName.sources, turn.sources, next(ids)).encode()
            TIME_TO_SOURCES.observe(time.perf_counter() - turn.started)
            while (piece := await stop.next_piece(pieces)) is not None:
                parts.append(piece)
                yield encode(EventName.token, TokenEvent(text=piece), next(ids)).encode()
            if stop.stopped:
                outcome.stopped(self._running.reason(turn.conversation_id))
            with anyio.CancelScope(shield=True):
                await pieces.aclose()
                await outcome.close_upstream()
                name, payload = await self._finish(turn, "".join(parts), outcome)
            yield encode(name, payload, next(ids)).encode()
        except BaseException:
            # The visitor left mid-stream (cancellation, or the server closing this generator): keep what was
            # said (D2) and release the upstream at once.
            with anyio.CancelScope(shield=True):
                await pieces.aclose()
                await outcome.close_upstream()
                if not outcome.finalized:
                    await self._finish(turn, "".join(parts), outcome)
            raise
        finally:
            self._running.unregister(turn.conversation_id, stop)
            STREAMS_ACTIVE.dec()
            STREAM_SECONDS.labels(outcome.status).observe(time.perf_counter() - turn.started)

    async def abandon(self, turn: PreparedTurn) -> None:
        """The response ended before its body began (the visitor left at once, D1): no model is called, the
        question stays stored and the empty answer is marked interrupted."""
        if not turn.streamed:
            await self._finish(turn, "", _Outcome())

    async def _generate(self, turn: PreparedTurn, outcome: _Outcome) -> AsyncIterator[str]:
        request = turn.request
        build: Callable[[Tier], Prompt] = partial(
            _prompt_for,
            question=request.question,
            hits=turn.hits,
            history=turn.history,
            creator=request.creator,
            weight=request.personality_weight,
        )
        try:
            stream = await self._cascade.start(build)
        except LorechatError as exc:
            outcome.failed(exc)
            return
        outcome.attach(stream)
        TIER_ANSWERS.labels(stream.tier).inc()
        first = True
        try:
            async for piece in stream:
                if first:
                    TIME_TO_FIRST_TOKEN.labels(stream.tier).observe(time.perf_counter() - turn.started)
                    first = False
                yield piece
        except LorechatError as exc:
            outcome.failed(exc)
            return
        outcome.completed()

    async def _finish(self, turn: PreparedTurn, text: str, outcome: _Outcome) -> tuple[EventName, Any]:
        """The final write, then the terminal event: `done` only once the answer is durable (INV-2)."""
        if outcome.status == "streaming":
            outcome.status = "interrupted"
        outcome.finalized = True
        try:
            written = await self._write(
                turn, text, outcome, outcome.status, outcome.error.code if outcome.error else None
            )
        except LorechatError as exc:
            log.warning("final write failed for message %s: %s", turn.assistant_message_id, exc.message)
            self._finish_later(turn, text, outcome)
            return EventName.error, _error_event(exc, turn.request.request_id)
        if not written:
            # Our lease lapsed (the database was unreachable for a whole lease) and another process reaped the
            # answer as interrupted: what is stored is not this text, so no `done` (INV-2).
            lost = LorechatError(ErrorCode.upstream_interrupted, "The answer could not be stored; please ask again.")
            return EventName.error, _error_event(outcome.error or lost, turn.request.request_id)
        if outcome.status in ("done", "stopped"):
            await self._remember(turn, text)
        if outcome.error is not None:
            return EventName.error, _error_event(outcome.error, turn.request.request_id)
        return EventName.done, DoneEvent(
            conversation_id=turn.conversation_id,
            message_id=turn.assistant_message_id,
            cascade_tier=outcome.tier or "",
            skipped=[SkippedTier(tier=tier, reason=reason) for tier, reason in outcome.skipped],
            finish_reason=outcome.finish_reason,
            search_query=turn.search_query,
            usage=Usage(**(outcome.usage or {"prompt_tokens": 0, "completion_tokens": 0})),
        )

    async def _write(
        self, turn: PreparedTurn, text: str, outcome: _Outcome, status: str, code: ErrorCode | None
    ) -> bool:
        written = await repository.finish_turn(
            self._sessions,
            assistant_message_id=turn.assistant_message_id,
            content=text,
            status=status,
            cascade_tier=outcome.tier,
            sources=[source.model_dump() for source in turn.sources],
            usage=outcome.usage,
            search_query=turn.search_query,
            error_code=code.value if code else None,
        )
        if self._leases is not None:
            self._leases.release(turn.assistant_message_id)  # stored, or already reaped: nothing to vouch for
        return written

    def _finish_later(self, turn: PreparedTurn, text: str, outcome: _Outcome) -> None:
        """The final write failed (database lost, F5): retry it in the background, so the answer leaves
        "streaming" once the database is back and its conversation accepts turns again (INV-1), instead of
        answering 409 until a restart reaps it. The client saw an error, never `done`: stored as such."""
        task = asyncio.get_running_loop().create_task(self._retry_finish(turn, text, outcome))
        self._retrying.add(task)
        task.add_done_callback(self._retrying.discard)

    async def _retry_finish(self, turn: PreparedTurn, text: str, outcome: _Outcome) -> None:
        status = outcome.status if outcome.status not in ("done", "stopped") else "interrupted"
        code = outcome.error.code if outcome.error else ErrorCode.database_unavailable
        delay, deadline = 0.5, time.monotonic() + self._settings.server.reaper_seconds
        while time.monotonic() < deadline:
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)
            with contextlib.suppress(LorechatError):
                await self._write(turn, text, outcome, status, code)
                return
        log.warning("gave up storing message %s; the reaper will mark it", turn.assistant_message_id)
        if self._leases is not None:
            self._leases.release(turn.assistant_message_id)  # let its lease lapse, so the reaper may finish it

    async def _history(self, request: TurnRequest) -> list[tuple[str, str]]:
        key = _cache_key(request.conversation_id or "", request.owner_id)
        cached = await self._cache.get(key)
        if cached is not None:
            return list(cached)
        detail = await repository.get_conversation(
            self._sessions, conversation_id=request.conversation_id or "", owner_id=request.owner_id
        )
        if detail is None:
            raise LorechatError(ErrorCode.not_found, "Conversation not found")
        history = [(m.role, m.content) for m in detail.messages if m.status in ("done", "stopped") and m.content]
        history = history[-self._settings.cache.history_messages :] if self._settings.cache.history_messages else []
        await self._cache.put(key, history)
        return history

    async def _remember(self, turn: PreparedTurn, answer: str) -> None:
        limit = self._settings.cache.history_messages
        history = [*turn.history, ("user", turn.request.question), ("assistant", answer)]
        key = _cache_key(turn.conversation_id, turn.request.owner_id)
        await self._cache.put(key, history[-limit:] if limit else [])

    async def _retrieve(self, query: str, creator: str | None) -> list[Hit]:
        slots = self._retrieval_slots.statistics()
        if slots.borrowed_tokens >= slots.total_tokens and slots.tasks_waiting >= self._settings.retrieval.max_waiting:
            # A burst beyond what the embedder can absorb: refuse at once rather than after the full timeout.
            raise LorechatError(ErrorCode.index_unavailable, "Search is busy; please ask again shortly", retry_after=1)
        timeout = self._settings.index.timeout_seconds
        try:
            with anyio.fail_after(timeout):
                # Abandoned on timeout: a thread cannot be cancelled, and waiting for it would void the bound (F6).
                search = partial(self._retriever.search, query, creator=creator)
                return await anyio.to_thread.run_sync(search, abandon_on_cancel=True, limiter=self._retrieval_slots)
        except TimeoutError as exc:
            raise LorechatError(
                ErrorCode.index_unavailable, f"The search index did not answer within {timeout:g}s", retry_after=5
            ) from exc


class _Outcome:
    """How the turn ended, filled in as it goes."""

    def __init__(self) -> None:
        self.status = "streaming"
        self.finish_reason = "stop"
        self.tier: str | None = None
        self.skipped: list[tuple[str, str]] = []  # (tier, reason) passed over before `tier` answered
        self.usage: dict[str, int] | None = None
        self.error: LorechatError | None = None
        self.finalized = False
        self._stream: Any = None

    def attach(self, stream: Any) -> None:
        self._stream = stream
        self.tier = stream.tier
        self.skipped = list(stream.fallbacks)

    def completed(self) -> None:
        self.status = "done"
        self.finish_reason = self._stream.finish_reason or "stop"
        self._take_usage()

    def failed(self, error: LorechatError) -> None:
        # Nothing streamed yet: a plain error. Something streamed: the partial answer is interrupted (F9).
        self.status = "interrupted" if self._stream is not None and self._stream.text else "error"
        self.error = error
        self._take_usage()

    def stopped(self, reason: str) -> None:
        if reason == "shutdown":
            self.failed(LorechatError(ErrorCode.shutting_down, "The server is restarting; please ask again."))
            self.status = "interrupted"
            return
        self.status = "stopped"
        self.finish_reason = "stopped"
        self.error = None
        self._take_usage()

    async def close_upstream(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()  # idempotent

    def _take_usage(self) -> None:
        if self._stream is not None:
            usage = self._stream.usage
            self.usage = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}


def _prompt_for(
    tier: Tier,
    *,
    question: str,
    hits: list[Hit],
    history: list[tuple[str, str]],
    creator: Creator | None,
    weight: float,
) -> Prompt:
    return build_prompt(
        question=question,
        sources=hits,
        history=history,
        creator=creator,
        personality_weight=weight if creator is not None else 0.0,
        context_window=tier.settings.context_window,
        max_tokens=tier.settings.max_tokens,
        prompt_budget=tier.prompt_budget,
    )


def _source(index: int, hit: Hit, snippet_chars: int) -> Source:
    return Source(
        index=index,
        chunk_id=hit.chunk_id,
        document_id=hit.document_id,
        creator=hit.creator,
        title=hit.title,
        url=hit.url,
        snippet=snippet(hit.text, snippet_chars),
        score=hit.score,
        start_seconds=hit.start_seconds,
        end_seconds=hit.end_seconds,
    )


def _error_event(error: LorechatError, request_id: str) -> ErrorEvent:
    return ErrorEvent(code=error.code.value, message=error.message, retryable=error.retryable, request_id=request_id)


def _cache_key(conversation_id: str, owner_id: str | None) -> str:
    # Owner in the key: a cached history is only ever served to whoever could read it from SQL.
    return f"{owner_id or '-'}:{conversation_id}"
