"""OpenTelemetry traces: the process's set-up, the span helpers the turn and ingest call, and the attribute names.

Off unless `tracing.enabled` or OTEL_EXPORTER_OTLP_ENDPOINT is set (OTEL_SDK_DISABLED=true wins). Off, every
helper returns a shared object whose methods do nothing: no span is made, no clock is read, nothing is allocated.
On, a chat turn is one trace: the turn's span (admission to the final write) with a child per phase (admission,
history, search with its query embedding and index search, coverage, each tier tried, the first token, the claim
check, the final write), and the HTTP, SQL and Redis spans of the instrumentations beneath them. One span per
phase, never per token: the token path (chat/relay.py, the native relay) is not touched.

Tiers are GenAI client spans (OpenTelemetry's GenAI semantic conventions: `gen_ai.operation.name`,
`gen_ai.request.model`, `gen_ai.usage.input_tokens`…), so Langfuse, Phoenix or Jaeger show them as model calls.
Privacy by default: no question, answer or prompt text in any attribute unless `tracing.include_content`; SQL is
recorded without its parameters and Redis commands without their arguments (the instrumentations' defaults).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, format_trace_id

if TYPE_CHECKING:
    from backend.settings import TracingSettings

log = logging.getLogger(__name__)

# --- Attribute names: OpenTelemetry's GenAI conventions, then lorechat's own (privacy: ids, sizes, verdicts).
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_PROVIDER = "gen_ai.provider.name"
GEN_AI_SYSTEM = "gen_ai.system"  # the older name of the provider; Langfuse and Phoenix still read it
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"  # content: only with tracing.include_content
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"  # content: only with tracing.include_content
ERROR_TYPE = "error.type"

SURFACE = "lorechat.surface"  # api, mcp, cli
CREATOR = "lorechat.creator"
CONVERSATION = "lorechat.conversation_id"
MESSAGE = "lorechat.message_id"
QUESTION_CHARS = "lorechat.question.chars"
QUESTION = "lorechat.question"  # content: only with tracing.include_content
ANSWER = "lorechat.answer"  # content: only with tracing.include_content
TURN_STATUS = "lorechat.turn.status"
FINISH_REASON = "lorechat.finish_reason"
ANSWER_CHARS = "lorechat.answer.chars"
TIER = "lorechat.tier"
TIER_KIND = "lorechat.tier.kind"
TIER_SKIPPED = "lorechat.tier.skipped"  # why the cascade passed this tier over (done.skipped's reason)
TTFT_MS = "lorechat.ttft_ms"
HITS = "lorechat.search.hits"
CACHED = "lorechat.search.cached"
UNSUPPORTED_CLAIMS = "lorechat.claims.unsupported"
CLAIMS = "lorechat.claims"

# Reasons a tier is passed over that are not a failure of its call (it was never asked, or its answer was not
# shown): the span is not marked as an error.
_NOT_FAILURES = frozenset({"circuit_open", "starting", "restarting", "unavailable", "busy", "too_slow", "unsupported"})


@dataclass
class _State:
    provider: TracerProvider | None = None
    tracer: trace.Tracer | None = None  # None: tracing is off
    include_content: bool = False
    exported_globally: bool = False


_state = _State()


def wanted(settings: TracingSettings) -> bool:
    """Whether the settings and the environment ask for traces."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return settings.enabled or bool(endpoint)


def enabled() -> bool:
    return _state.tracer is not None


def include_content() -> bool:
    return _state.include_content


def setup(settings: TracingSettings, *, exporter: SpanExporter | None = None) -> bool:
    """Turn tracing on for this process when asked (once; later calls keep the first set-up). `exporter` (tests:
    an InMemorySpanExporter) replaces the OTLP exporter and exports each span as it ends. True when on."""
    if _state.tracer is not None:
        return True
    if exporter is None and not wanted(settings):
        return False
    name = os.environ.get("OTEL_SERVICE_NAME") or settings.service_name
    provider = TracerProvider(
        resource=Resource.create({"service.name": name}), sampler=ParentBased(root=_Roots(settings.sample_ratio))
    )
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # No endpoint: the exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT and _HEADERS itself.
        base = settings.endpoint.rstrip("/")
        endpoint = (base if base.endswith("/v1/traces") else base + "/v1/traces") if base else None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        if not _state.exported_globally:  # libraries that trace on their own (the MCP SDK) join the same traces
            trace.set_tracer_provider(provider)
            _state.exported_globally = True
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _state.provider = provider
    _state.tracer = provider.get_tracer("lorechat")
    _state.include_content = settings.include_content
    if exporter is None:
        _instrument_httpx(provider)
    log.info("tracing on: service %s, %s of new traces kept", name, settings.sample_ratio)
    return True


def shutdown() -> None:
    """Flush what is pending and turn tracing off for this process (the end of `serve`, of a CLI run, a test)."""
    provider, _state.provider, _state.tracer = _state.provider, None, None
    _state.include_content = False
    if provider is not None:
        provider.force_flush()
        provider.shutdown()


class _Roots(Sampler):
    """New traces by ratio, except client calls that begin one: the Redis, SQL and HTTP calls of background loops
    (the stream log's flush every 25 ms, lease and slot renewals) would each be a trace of one span."""

    def __init__(self, ratio: float) -> None:
        self._ratio = TraceIdRatioBased(ratio)

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Sequence[Any] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if kind is SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return self._ratio.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"LorechatRoots{{{self._ratio.get_description()}}}"


# --- The instrumentations, applied by the app's factory and lifespan when tracing is on.


def instrument_app(app: Any) -> None:
    """A server span per HTTP request. Its `send`/`receive` spans are excluded: one per token otherwise."""
    if _state.provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=_state.provider, exclude_spans=["send", "receive"], excluded_urls="healthz,readyz,metrics"
    )


def instrument_engine(engine: Any) -> None:
    """SQL statements as client spans (text without parameters) under the span that ran them."""
    if _state.provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import get_meter

    usage = get_meter("lorechat.sqlalchemy").create_up_down_counter("db.client.connections.usage")
    EngineTracer(_state.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy"), engine.sync_engine, usage)


def instrument_redis(client: Any) -> None:
    """Redis commands as client spans, their arguments replaced by `?` (the instrumentation's default)."""
    if _state.provider is None or client is None:
        return
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor.instrument_client(client, tracer_provider=_state.provider)


def _instrument_httpx(provider: TracerProvider) -> None:
    """Outgoing httpx requests (the Qdrant server client, channel fetches) as client spans. Process-wide, so only
    when exporting for real: in tests it would trace the test's own clients, whose unsampled traceparent (a client
    span starting a trace is dropped, `_Roots`) would then switch the service's traces off."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)


# --- Spans. Off, each helper returns NO_SPAN / NO_TRACE / NO_ATTEMPT.


class _NoSpan:
    """A span that is not there: a context manager and a span alike, doing nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_attribute(self, key: str, value: Any) -> None:
        return None

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        return None

    def is_recording(self) -> bool:
        return False


NO_SPAN = _NoSpan()


def span(name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Any]:
    """A child of the current span for one phase, current while the block runs; NO_SPAN when tracing is off."""
    tracer = _state.tracer
    if tracer is None:
        return NO_SPAN
    return tracer.start_as_current_span(name, attributes=attributes, record_exception=False)


def current_trace_id() -> str | None:
    """The current span's trace id (32 hex digits) while a sampled span is current, else None (the logs' field)."""
    if _state.tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    return format_trace_id(context.trace_id) if context.is_valid and context.trace_flags.sampled else None


def content(text: str) -> str | None:
    """`text` when content may be recorded (tracing.include_content), else None (the attribute is left out)."""
    return text if _state.include_content else None


def _failed(span: Span, error: BaseException | None) -> None:
    code = getattr(getattr(error, "code", None), "value", None) or (type(error).__name__ if error else "error")
    span.set_attribute(ERROR_TYPE, str(code))
    span.set_status(Status(StatusCode.ERROR))


class TurnTrace:
    """A chat turn's span, from admission to the final write: the route starts it (`start_turn`), makes it current
    around `ChatService.prepare`, and `run` ends it. Its phases are children (`phase`, or `span` while current)."""

    def __init__(self, span: Span) -> None:
        self._span = span
        self._ended = False
        self._attempt: TierAttempt | _NoAttempt = NO_ATTEMPT  # the tier that answered: its GenAI span

    @property
    def trace_id(self) -> str | None:
        context = self._span.get_span_context()
        return format_trace_id(context.trace_id) if context.trace_flags.sampled else None

    def phase(self, name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Any]:
        """A child of the turn's span, current while the block runs (the turn's span need not be current)."""
        assert _state.tracer is not None
        return _state.tracer.start_as_current_span(
            name, context=trace.set_span_in_context(self._span), attributes=attributes, record_exception=False
        )

    def current(self) -> AbstractContextManager[Any]:
        """The turn's span current while the block runs (spans made inside are its children)."""
        return _use(self._span)

    def attach(self) -> object:
        """The turn's span current from here on in this task; give the token to `ended`."""
        return otel_context.attach(trace.set_span_in_context(self._span))

    def asked(self, *, conversation_id: str, message_id: str) -> None:
        self._span.set_attributes({CONVERSATION: conversation_id, MESSAGE: message_id})

    def generating(self, attempt: TierAttempt | _NoAttempt) -> None:
        self._attempt = attempt

    def generated(
        self, *, usage: Mapping[str, int] | None, finish_reason: str, error: BaseException | None, answer: str
    ) -> None:
        """The answering tier's figures, once the answer is whole: its GenAI span ends here."""
        self._attempt.finished(usage=usage, finish_reason=finish_reason, error=error, answer=answer)

    def checked(self, *, claims: int, unsupported: int) -> None:
        self._span.set_attributes({CLAIMS: claims, UNSUPPORTED_CLAIMS: unsupported})

    def failed(self, error: BaseException) -> None:
        """The turn ended before it streamed (a refusal in admission, a failed prepare)."""
        if self._ended:
            return
        self._ended = True
        _failed(self._span, error)
        self._span.end()

    def ended(
        self,
        token: object | None = None,
        *,
        status: str,
        finish_reason: str,
        tier: str | None,
        error: BaseException | None,
        answer_chars: int,
    ) -> None:
        """The turn is over (after its final write): how it ended, and its span ends."""
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]
        if self._ended:
            return
        self._ended = True
        self._attempt.abandoned()  # no-op unless the turn ended without reaching its final write
        self._span.set_attributes({TURN_STATUS: status, FINISH_REASON: finish_reason, ANSWER_CHARS: answer_chars})
        if tier:
            self._span.set_attribute(TIER, tier)
        if error is not None:
            _failed(self._span, error)
        self._span.end()


class _NoTurn:
    """The turn's trace when tracing is off."""

    __slots__ = ()
    trace_id = None

    def phase(self, name: str, attributes: Mapping[str, Any] | None = None) -> _NoSpan:
        return NO_SPAN

    def current(self) -> _NoSpan:
        return NO_SPAN

    def attach(self) -> None:
        return None

    def asked(self, *, conversation_id: str, message_id: str) -> None:
        return None

    def generating(self, attempt: TierAttempt | _NoAttempt) -> None:
        return None

    def generated(self, **_: Any) -> None:
        return None

    def checked(self, *, claims: int, unsupported: int) -> None:
        return None

    def failed(self, error: BaseException) -> None:
        return None

    def ended(self, token: object | None = None, **_: Any) -> None:
        return None


NO_TRACE = _NoTurn()
Trace = TurnTrace | _NoTurn


def start_turn(*, surface: str, creator: str | None, question: str) -> Trace:
    """A chat turn's trace, begun (under the current span: the HTTP request's, or an MCP tool call's)."""
    tracer = _state.tracer
    if tracer is None:
        return NO_TRACE
    attributes: dict[str, Any] = {SURFACE: surface, QUESTION_CHARS: len(question)}
    if creator:
        attributes[CREATOR] = creator
    if _state.include_content:
        attributes[QUESTION] = question
    return TurnTrace(tracer.start_span("chat turn", attributes=attributes, record_exception=False))


class TierAttempt:
    """One tier tried by the cascade. Asked (`called`), it is a GenAI client span "chat <model>" lasting until its
    answer ends, with a "first token" child from the request to the first token; passed over (`skipped`), a short
    span naming why."""

    def __init__(self, tier: Any) -> None:
        self._tier = tier
        self._model = str(getattr(tier.settings, "model", "") or tier.kind)
        self._begun = time.time_ns()
        self._called = 0
        self._span: Span | None = None

    def called(self, prompt: Any) -> None:
        """The tier is asked now (its request goes out)."""
        assert _state.tracer is not None
        tier = self._tier
        attributes: dict[str, Any] = {
            GEN_AI_OPERATION: "chat",
            GEN_AI_PROVIDER: tier.kind,
            GEN_AI_SYSTEM: tier.kind,
            GEN_AI_REQUEST_MODEL: self._model,
            GEN_AI_MAX_TOKENS: prompt.max_tokens,
            TIER: tier.name,
            TIER_KIND: tier.kind,
        }
        temperature = getattr(tier.settings, "temperature", None)
        if temperature is not None:
            attributes[GEN_AI_TEMPERATURE] = temperature
        if _state.include_content:
            attributes[GEN_AI_INPUT_MESSAGES] = json.dumps(getattr(prompt, "messages", None) or [], default=str)
        self._called = time.time_ns()
        self._span = _state.tracer.start_span(
            f"chat {self._model}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=self._called,
            record_exception=False,
        )

    def skipped(self, reason: str) -> None:
        """The cascade passed the tier over: before asking it, or because its call failed before a first token (or
        its held answer was not supported)."""
        assert _state.tracer is not None
        span = self._span
        if span is None:  # never asked: a short span of its own, from when the cascade reached the tier
            span = _state.tracer.start_span(
                f"tier {self._tier.name}", start_time=self._begun, attributes={TIER: self._tier.name}
            )
        span.set_attribute(TIER_SKIPPED, reason)
        if reason not in _NOT_FAILURES:
            span.set_attribute(ERROR_TYPE, reason)
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        self._span = None

    def answered(self) -> None:
        """The tier's first token is here: the "first token" child spans the wait for it."""
        assert _state.tracer is not None
        if self._span is None:
            return
        now = time.time_ns()
        self._span.set_attribute(TTFT_MS, round((now - self._called) / 1e6, 1))
        first = _state.tracer.start_span(
            "first token", context=trace.set_span_in_context(self._span), start_time=self._called
        )
        first.end(end_time=now)

    def finished(
        self, *, usage: Mapping[str, int] | None, finish_reason: str, error: BaseException | None, answer: str
    ) -> None:
        span, self._span = self._span, None
        if span is None:
            return
        attributes: dict[str, Any] = {GEN_AI_RESPONSE_MODEL: self._model, GEN_AI_FINISH_REASONS: [finish_reason]}
        if usage:
            attributes[GEN_AI_INPUT_TOKENS] = usage.get("prompt_tokens", 0)
            attributes[GEN_AI_OUTPUT_TOKENS] = usage.get("completion_tokens", 0)
        if _state.include_content:
            attributes[GEN_AI_OUTPUT_MESSAGES] = json.dumps([{"role": "assistant", "content": answer}])
        span.set_attributes(attributes)
        if error is not None:
            _failed(span, error)
        span.end()

    def abandoned(self) -> None:
        """The attempt ended without an answer to report (cancelled, or the turn broke off)."""
        span, self._span = self._span, None
        if span is not None:
            span.set_attribute(ERROR_TYPE, "cancelled")
            span.end()


class _NoAttempt:
    __slots__ = ()

    def called(self, prompt: Any) -> None:
        return None

    def skipped(self, reason: str) -> None:
        return None

    def answered(self) -> None:
        return None

    def finished(self, **_: Any) -> None:
        return None

    def abandoned(self) -> None:
        return None


NO_ATTEMPT = _NoAttempt()
Attempt = TierAttempt | _NoAttempt


def tier_attempt(tier: Any) -> TierAttempt | _NoAttempt:
    """The cascade reached `tier` (NO_ATTEMPT when tracing is off)."""
    return NO_ATTEMPT if _state.tracer is None else TierAttempt(tier)


@contextmanager
def _use(span: Span) -> Iterator[Span]:
    with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
        yield span


class TraceIds(logging.Filter):
    """Adds ` trace=<id>` to log records made while a sampled span is current (`%(trace)s` in the format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        trace_id = current_trace_id()
        record.trace = f" trace={trace_id}" if trace_id else ""
        return True
