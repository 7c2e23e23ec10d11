"""One chat turn, end to end: `prepare` does everything that can fail as a plain HTTP error, `run(turn, sink)` the rest.

prepare: history (history.py) → search query → retrieval (retrieval_gate.py) → store the question and a
"streaming" placeholder. run: `sources` → tokens from the first tier that answers (cascade.py) → final write
(final_write.py) → `done`, or an `error` event once the first byte is out. No DB session is held while
streaming: writes are short and the final one is shielded from cancellation, so a visitor who leaves still gets
their partial answer stored. How the turn ended is tracked in outcome.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from functools import partial

import anyio

from backend import tracing
from backend.chat.cascade import Cascade
from backend.chat.final_write import FinalAnswer, FinalWriter
from backend.chat.follow_ups import MODEL_KINDS, model_follow_ups
from backend.chat.history import ConversationHistory
from backend.chat.prompt import CuratedMatch, Prompt, build_prompt, search_query_for, uncovered_prompt
from backend.chat.relay import native_relay_built, relay_answer
from backend.chat.retrieval_gate import RetrievalGate
from backend.chat.tiers.base import Tier
from backend.chat.tiers.curated import NAME as CURATED
from backend.chat.tiers.curated import CuratedAnswers, framing, verified_citations
from backend.errors import ErrorCode, LorechatError
from backend.grounding.answer_checks import AnswerChecks
from backend.grounding.claim_check import AnswerCheck
from backend.grounding.coverage import Coverage, follow_up_context
from backend.grounding.sentences import SentenceVectors
from backend.grounding.suggestions import follow_ups
from backend.metrics import STREAM_SECONDS, STREAMS_ACTIVE, TIER_ANSWERS, TIME_TO_FIRST_TOKEN, TIME_TO_SOURCES
from backend.retrieval.search import Retriever, snippet
from backend.settings import Settings
from backend.stages import Creator, Hit
from backend.storage import repository
from backend.storage.cache import HistoryCache
from backend.storage.leases import Leases
from backend.storage.records import HISTORY_STATUSES, MessageStatus, Turn
from backend.storage.repository import Sessions
from backend.stream.events import (
    Citation,
    CuratedAnswerRef,
    DoneEvent,
    ErrorEvent,
    EventSink,
    SkippedTier,
    Source,
    SourcesEvent,
    Usage,
)
from backend.stream.outcome import TurnOutcome
from backend.stream.running import DISCONNECTED, SEND_TIMEOUT, RunningTurns, TurnControl
from backend.stream.server import native_path_problem

log = logging.getLogger(__name__)

_FOLLOW_UPS_KEPT = 1024


@dataclass(frozen=True, slots=True)
class TurnRequest:
    question: str
    creator: Creator | None
    conversation_id: str | None
    personality_weight: float
    owner_id: str | None
    request_id: str
    # The turn's trace (backend/tracing.py), begun by the caller around its admission; `run` ends it.
    trace: tracing.Trace = tracing.NO_TRACE


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
    coverage: Coverage | None = None  # do the sources answer the question at all (coverage.py)
    held_check: tuple[str, AnswerCheck] | None = None  # a held answer's claim check, reused when it is stored
    curated: CuratedMatch | None = None  # a curated answer that fits: the curated tier says it
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
        vectors: SentenceVectors | None = None,
        curated: CuratedAnswers | None = None,
    ) -> None:
        self._settings = settings
        self._curated = curated  # the curator's answers (backend/curation/answers.py), matched before the tiers
        self._follow_ups: OrderedDict[Hashable, list[str]] = OrderedDict()  # recent turns' follow-ups (_suggestions)
        self._sessions = sessions
        self._cascade = cascade
        self._running = running
        self._coalesce_seconds = settings.server.token_coalesce_seconds
        self._native_token_path = settings.server.native_token_path
        # Which relay writes tokens, and why not the native one (for /readyz and the log).
        self.token_path = "native" if self._native_token_path else "python (server.native_token_path is false)"
        if self._native_token_path:
            problem = (
                None if native_relay_built() else "the native token relay is not built (run scripts/setup)"
            ) or native_path_problem()
            if problem is not None:
                log.warning("%s: tokens go through the Python relay", problem)
                self._native_token_path, self.token_path = False, f"python ({problem})"
        self._leases = leases  # renewed while this process streams the turn (F13)
        self._history = ConversationHistory(sessions=sessions, cache=cache, limit=settings.cache.history_messages)
        self._retrieval = RetrievalGate(retriever, settings)
        # Coverage before the tiers, the claim check after the answer (answer_checks.py).
        self._checks = AnswerChecks(vectors or SentenceVectors(retriever.embedder))
        self._writer = FinalWriter(sessions=sessions, leases=leases, retry_for_seconds=settings.server.reaper_seconds)

    async def prepare(self, request: TurnRequest) -> PreparedTurn:
        """Everything before the first byte; failures here are HTTP errors and reach no model."""
        started = time.perf_counter()
        with tracing.span("history"):
            history = (
                await self._history.load(request.conversation_id, owner_id=request.owner_id)
                if request.conversation_id
                else []
            )
        search_query = search_query_for(request.question, history)
        creator_slug = request.creator.slug if request.creator else None
        # The question is stored while the query is embedded (the two took ~10 and ~3 ms one after the other).
        # A search that fails withdraws the stored turn, so the 503 leaves nothing behind; a turn that cannot be
        # stored (404, 409, database down) abandons the search. A busy search queue refuses before any write.
        searching = self._retrieval.start(search_query, creator=creator_slug)
        try:
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
        except BaseException:
            searching.cancel()
            await asyncio.gather(searching, return_exceptions=True)
            raise
        try:
            found = await searching
            match, found = await self._curated_match(request, found)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._withdraw(turn)
            raise
        if self._leases is not None:
            self._leases.hold(turn.assistant_message_id)
        request.trace.asked(conversation_id=turn.conversation_id, message_id=turn.assistant_message_id)
        prepared = PreparedTurn(
            request=request,
            conversation_id=turn.conversation_id,
            assistant_message_id=turn.assistant_message_id,
            search_query=search_query,
            history=history,
            hits=found,  # still carrying their stored sentence vectors: `run` caches them once `sources` is out
            started=started,
            curated=match,
        )
        prepared.sources = [
            _source(index, hit, self._settings.retrieval.snippet_chars) for index, hit in enumerate(found, start=1)
        ]
        return prepared

    async def _curated_match(self, request: TurnRequest, found: list[Hit]) -> tuple[CuratedMatch | None, list[Hit]]:
        """The curated answer that fits the question, with its linked documents' best chunks as the turn's sources;
        (None, the search's hits) when none fits. A failure here only means no curated answer for this turn."""
        if self._curated is None:
            return None, found
        try:
            match = await self._curated.match(request.question, creator=request.creator)
            if match is None:
                return None, found
            if not match.documents:
                return match, []
            creator = request.creator.slug if request.creator else None
            k = min(self._settings.retrieval.k, 4)
            return match, await self._retrieval.within(request.question, match.documents, creator=creator, k=k)
        except Exception:
            log.exception("matching curated answers failed; the tiers answer this question")
            return None, found

    async def run(self, turn: PreparedTurn, sink: EventSink, control: TurnControl | None = None) -> None:
        """Stream the turn into `sink`: `sources`, text, then exactly one `done` or `error` (INV-3), sent only
        after the final write (INV-2). `control` is the turn's one cancel scope and clocks (running.py): stop,
        shutdown, the watchdog's deadlines and the visitor leaving all end the generation through it."""
        turn.streamed = True
        traced = turn.request.trace.attach()  # the turn's span current until it ends: its phases nest under it
        control = control or TurnControl()
        outcome = TurnOutcome()
        STREAMS_ACTIVE.inc()
        self._running.register(turn.conversation_id, control)  # the stop endpoint and shutdown reach it here
        try:
            with anyio.CancelScope() as scope:
                control.scope = scope
                if control.stopped:  # stopped before the scope existed
                    scope.cancel()
                await self._send_timed(control, sink.send(SourcesEvent(sources=turn.sources)))
                TIME_TO_SOURCES.observe(time.perf_counter() - turn.started)
                # The sentence vectors stored at ingest go to the shared cache (the answer checks then embed no
                # source text) and leave the turn's hits. Not before `sources`: splitting and decoding them took
                # ~0.5 ms that the visitor waited for.
                turn.hits = self._checks.vectors.seed(turn.hits)
                # Whether the sources answer the question at all decides what the tiers are asked; it embeds
                # source sentences (milliseconds to tens of them), so it runs after `sources` is out, not before.
                # A curated answer was written for this question: the curator, not retrieval, vouches for it.
                with tracing.span("coverage"):
                    if turn.curated is None:
                        turn.coverage = await self._checks.coverage(
                            question=turn.request.question,
                            search_query=turn.search_query,
                            hits=turn.hits,
                            creator=turn.request.creator,
                        )
                await self._generate(turn, outcome, sink, control)
            if control.reason is not None and outcome.status is MessageStatus.streaming:
                outcome.cancelled(control.reason)
            with anyio.CancelScope(shield=True):
                await outcome.close_upstream()
                terminal = await self._finish(turn, outcome.text, outcome)
            if control.reason in (SEND_TIMEOUT, DISCONNECTED):  # nobody is reading any more
                sink.detach()
            await sink.send(terminal)  # a detached sink still logs it for a resume
        except BaseException:
            # Cancelled from outside, or the sink failed (the connection broke): keep what was said (D2) and
            # release the upstream at once.
            with anyio.CancelScope(shield=True):
                await outcome.close_upstream()
                if not outcome.finalized:
                    await self._finish(turn, outcome.text, outcome)
            raise
        finally:
            self._running.unregister(turn.conversation_id, control)
            STREAMS_ACTIVE.dec()
            STREAM_SECONDS.labels(outcome.status).observe(time.perf_counter() - turn.started)
            turn.request.trace.ended(
                traced,
                status=outcome.status.value,
                finish_reason=outcome.finish_reason,
                tier=outcome.tier,
                error=outcome.error,
                answer_chars=len(outcome.text),
            )

    async def _withdraw(self, turn: Turn) -> None:
        try:
            await repository.withdraw_turn(self._sessions, turn)
        except Exception:  # its lease lapses and the reaper marks it interrupted (F13)
            log.warning("conversation %s: could not withdraw a turn whose search failed", turn.conversation_id)

    async def abandon(self, turn: PreparedTurn) -> None:
        """The response ended before its body began (the visitor left at once, D1): no model is called, the
        question stays stored and the empty answer is marked interrupted."""
        if not turn.streamed:
            outcome = TurnOutcome()
            try:
                await self._finish(turn, "", outcome)
            finally:
                turn.request.trace.ended(
                    status=outcome.status.value, finish_reason="", tier=None, error=outcome.error, answer_chars=0
                )

    async def search(self, query: str, *, creator: str | None, k: int | None = None) -> list[Hit]:
        """A search on its own (the MCP server's search_knowledge), bounded like a turn's (retrieval_gate.py)."""
        return await self._retrieval.start(query, creator=creator, k=k)

    @staticmethod
    async def _send_timed(control: TurnControl, sending: Awaitable[None]) -> None:
        """A write the watchdog may time out (L3): `sending` and `since` are its clocks."""
        control.sending = True
        control.since = control.now()
        await sending
        control.sending = False
        control.since = control.now()

    async def _generate(self, turn: PreparedTurn, outcome: TurnOutcome, sink: EventSink, control: TurnControl) -> None:
        """The answer: the cascade's first tier that answers, then its pieces to the sink (relay.py)."""
        request = turn.request
        build: Callable[[Tier], Prompt] = partial(
            _prompt_for,
            question=request.question,
            hits=turn.hits,
            history=turn.history,
            follow_up_of=follow_up_context(request.question, turn.search_query),
            said_before=next((text for role, text in reversed(turn.history) if role == "assistant"), ""),
            creator=request.creator,
            weight=request.personality_weight,
            covered=turn.coverage.covered if turn.coverage else True,
            curated=turn.curated,
        )
        try:
            stream = await self._cascade.start(build, supported=partial(self._supported, turn))
        except LorechatError as exc:
            outcome.failed(exc)
            return
        outcome.attach(stream)
        turn.request.trace.generating(stream.attempt)
        TIER_ANSWERS.labels(stream.tier).inc()
        ttft = time.perf_counter() - turn.started
        TIME_TO_FIRST_TOKEN.labels(stream.tier).observe(ttft)
        outcome.ttft_ms = round(ttft * 1000)
        control.idle_seconds = stream.idle_seconds
        try:
            await relay_answer(
                stream=stream,
                sink=sink,
                outcome=outcome,
                control=control,
                window=self._coalesce_seconds,
                native=self._native_token_path,
            )
        except LorechatError as exc:
            outcome.failed(exc)
            return
        outcome.completed()

    async def _supported(self, turn: PreparedTurn, text: str) -> bool:
        """The gate of a tier that holds its answer: every claim found in the sources, and at least one claim
        unless the sources do not cover the question (then a refusal, which states nothing, is the answer)."""
        with tracing.span("claim check", {"lorechat.held": True}):
            check = await self._checks.check(text=text, hits=turn.hits, creator=turn.request.creator)
        turn.held_check = (text, check)
        claims = sum(1 for sentence in check.sentences if sentence.claim)
        covered = turn.coverage.covered if turn.coverage else True
        return check.unsupported_claims == 0 and (claims > 0 or not covered)

    async def _checked(self, turn: PreparedTurn, text: str) -> AnswerCheck:
        if turn.held_check is not None and turn.held_check[0] == text:
            return turn.held_check[1]
        return await self._checks.check(text=text, hits=turn.hits, creator=turn.request.creator)

    async def _finish(self, turn: PreparedTurn, text: str, outcome: TurnOutcome) -> DoneEvent | ErrorEvent:
        """The final write, then the terminal event: `done` only once the answer is durable (INV-2)."""
        if outcome.status is MessageStatus.streaming:
            outcome.status = MessageStatus.interrupted
        outcome.finalized = True
        await outcome.measure_usage()
        turn.request.trace.generated(
            usage=outcome.usage, finish_reason=outcome.finish_reason, error=outcome.error, answer=text
        )
        with tracing.span("claim check"):
            check = await self._checked(turn, text)
        turn.request.trace.checked(claims=len(check.sentences), unsupported=check.unsupported_claims)
        unanswered = turn.coverage is not None and not turn.coverage.covered
        citations, unsupported = check.as_json(), check.unsupported_claims
        served = turn.curated if outcome.tier == CURATED else None
        if served is not None:  # the curator's words are curator-verified, sentence by sentence
            body_start = len(framing(turn.request.creator, turn.request.personality_weight)) + 1
            citations = verified_citations(citations, body_start)
            unsupported = 0
        answer = FinalAnswer(
            assistant_message_id=turn.assistant_message_id,
            text=text,
            status=outcome.status,
            error_code=outcome.error.code if outcome.error else None,
            cascade_tier=outcome.tier,
            sources=[source.model_dump() for source in turn.sources],
            usage=outcome.usage,
            search_query=turn.search_query,
            citations=citations,
            unsupported_claims=unsupported,
            unanswered=unanswered,
            ttft_ms=outcome.ttft_ms,
        )
        try:
            with tracing.span("final write"):
                written = await self._writer.write(answer)
        except LorechatError as exc:
            log.warning("final write failed for message %s: %s", turn.assistant_message_id, exc.message)
            self._writer.write_later(answer)
            return _error_event(exc, turn.request.request_id)
        if not written:
            # Our lease lapsed (the database was unreachable for a whole lease) and another process reaped the
            # answer as interrupted: what is stored is not this text, so no `done` (INV-2).
            lost = LorechatError(ErrorCode.upstream_interrupted, "The answer could not be stored; please ask again.")
            return _error_event(outcome.error or lost, turn.request.request_id)
        if outcome.status in HISTORY_STATUSES:
            await self._history.remember(
                turn.conversation_id,
                owner_id=turn.request.owner_id,
                before=turn.history,
                question=turn.request.question,
                answer=text,
            )
        if served is not None and outcome.status in HISTORY_STATUSES:
            await self._served(served, turn.assistant_message_id)
        if outcome.error is not None:
            return _error_event(outcome.error, turn.request.request_id)
        suggestions = (
            await self._suggestions(turn, text, check, outcome.tier) if outcome.status is MessageStatus.done else []
        )
        return DoneEvent(
            conversation_id=turn.conversation_id,
            message_id=turn.assistant_message_id,
            cascade_tier=outcome.tier or "",
            skipped=[SkippedTier(tier=tier, reason=reason) for tier, reason in outcome.skipped],
            finish_reason=outcome.finish_reason,
            search_query=turn.search_query,
            usage=Usage(**(outcome.usage or {"prompt_tokens": 0, "completion_tokens": 0})),
            citations=[Citation.model_validate(item) for item in answer.citations or []],
            unanswered=unanswered,
            trace_id=turn.request.trace.trace_id,
            curated_answer=CuratedAnswerRef(id=served.answer_id, version=served.version) if served else None,
            suggestions=suggestions,
        )

    async def _served(self, match: CuratedMatch, message_id: str) -> None:
        """Count the use (and so the 👍/👎 it gets) for the curated answer; a failure costs the count, not the turn."""
        if self._curated is None:
            return
        try:
            await self._curated.served(match, message_id=message_id)
        except Exception:
            log.exception("could not record the use of curated answer %s", match.answer_id)

    async def _suggestions(self, turn: PreparedTurn, text: str, check: AnswerCheck, tier: str | None) -> list[str]:
        """Up to `curated.suggestions` follow-ups the visitor has not asked: questions related curated answers
        answer, then those the model tier that answered proposes (`curated.model_suggestions`, chat/follow_ups.py),
        then the headings and titles of the turn's sources the answer did not quote (grounding/suggestions.py),
        each checked answerable. Never fails the turn."""
        limit = self._settings.curated.suggestions
        if limit <= 0 or not text.strip():
            return []
        request = turn.request
        asked = [content for role, content in turn.history if role == "user"] + [request.question]
        found: list[str] = []
        headings: list[str] = []
        # The model's proposals are asked for first and read last: the other follow-ups are found meanwhile.
        model = self._model_tier(tier)
        proposing = asyncio.ensure_future(self._proposed(model, turn, text, asked, limit)) if model else None
        try:
            if self._curated is not None:
                exclude = turn.curated.answer_id if turn.curated else None
                found += await self._curated.related(request.question, creator=request.creator, exclude=exclude,
                                                     limit=limit)  # fmt: skip
            if len(found) < limit and turn.hits:
                quoted = frozenset(s.quote.source for s in check.sentences if s.quote is not None)
                # The same question over the same sources (asked again) gets the same follow-ups: kept, not rechecked.
                key = (tuple(asked), request.creator, tuple(hit.chunk_id for hit in turn.hits), quoted, limit)
                kept = self._follow_ups.get(key)
                if kept is None:
                    suggest = partial(
                        follow_ups, turn.hits, asked=asked, quoted=set(quoted), creator=request.creator,
                        vectors=self._checks.vectors, limit=limit,
                    )  # fmt: skip
                    kept = self._follow_ups[key] = await anyio.to_thread.run_sync(suggest)
                    if len(self._follow_ups) > _FOLLOW_UPS_KEPT:
                        self._follow_ups.popitem(last=False)
                headings = kept
            if proposing is not None:
                found += await proposing
        except Exception:
            log.exception("follow-up suggestions failed for message %s", turn.assistant_message_id)
        finally:
            if proposing is not None:
                proposing.cancel()  # done by now, unless a failure above left it running
        seen = {question.casefold() for question in asked}
        unique = [q for q in dict.fromkeys([*found, *headings]) if q.casefold() not in seen]
        return unique[:limit]

    def _model_tier(self, name: str | None) -> Tier | None:
        """The tier that answered, when it is a model asked for follow-ups too (`curated.model_suggestions`)."""
        if not self._settings.curated.model_suggestions or name is None:
            return None
        return next((t for t in self._cascade.tiers if t.name == name and t.kind in MODEL_KINDS), None)

    async def _proposed(self, tier: Tier, turn: PreparedTurn, text: str, asked: list[str], limit: int) -> list[str]:
        request = turn.request
        return await model_follow_ups(
            tier, question=request.question, answer=text, hits=turn.hits, asked=asked, creator=request.creator,
            weight=request.personality_weight if request.creator is not None else 0.0, vectors=self._checks.vectors,
            settings=self._settings.curated, limit=limit,
        )  # fmt: skip


def _prompt_for(
    tier: Tier,
    *,
    question: str,
    hits: list[Hit],
    history: list[tuple[str, str]],
    creator: Creator | None,
    weight: float,
    follow_up_of: str = "",
    said_before: str = "",
    covered: bool = True,
    curated: CuratedMatch | None = None,
) -> Prompt:
    prompt = build_prompt(
        question=question,
        sources=hits,
        history=history,
        creator=creator,
        personality_weight=weight if creator is not None else 0.0,
        context_window=tier.settings.context_window,
        max_tokens=tier.settings.max_tokens,
        prompt_budget=tier.prompt_budget,
    )
    prompt.curated = curated
    prompt.follow_up_of = follow_up_of
    prompt.said_before = said_before if follow_up_of else ""
    return prompt if covered else uncovered_prompt(prompt)


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
        text=hit.text,
    )


def _error_event(error: LorechatError, request_id: str) -> ErrorEvent:
    return ErrorEvent(code=error.code.value, message=error.message, retryable=error.retryable, request_id=request_id)
