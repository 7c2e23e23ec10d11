"""OpenTelemetry traces of real turns, read from the SDK's in-memory exporter (docs/reliability.md, "Agents and
traces (M)"): one trace per turn with a span per phase and its duration, each tier tried (why one was passed over),
GenAI attributes on the model calls, the trace id in `done` and the logs, and no question or answer text in any
attribute unless tracing.include_content."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode, format_trace_id

from backend import tracing
from backend.retrieval.embedder import Embedder
from backend.retrieval.search import Retriever
from backend.retrieval.stores.edge import EdgeStore
from backend.settings import ChunkingSettings, McpSettings, RetrievalSettings, TracingSettings
from tests.backend.api.harness import EXTRACTIVE, Backend, LiveApp, extractive_tier, live_app, upstream_tier
from tests.backend.api.streams import parse_sse, post_chat, settled
from tests.backend.mcp.test_mcp import mcp_client, payload
from tests.conftest import indexer
from tests.fakes import Script, ScriptedOpenAI

HAZEL = "hazel-marsh"
WORDS = [f" word{i}" for i in range(200)]


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on for this module's apps, every span kept in memory; off again afterwards."""
    memory = InMemorySpanExporter()
    assert tracing.setup(TracingSettings(enabled=True), exporter=memory)
    yield memory
    tracing.shutdown()
    assert not tracing.enabled()


@pytest.fixture(scope="module")
def traced_app(
    exporter: InMemorySpanExporter,
    backend: Backend,
    fake: ScriptedOpenAI,
    api_index: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveApp]:
    with live_app(
        template=api_index,
        workdir=tmp_path_factory.mktemp(f"traced-{backend.name}"),
        backend=backend,
        tiers=[upstream_tier(fake), extractive_tier()],
        tracing=TracingSettings(enabled=True),
        mcp=McpSettings(enabled=True, allow_anonymous=True),
    ) as app:
        yield app


def question(topic: str) -> str:
    """A question asked once (a repeated one would be answered from the search cache: no embedding span)."""
    return f"How do I keep my starter {topic} healthy, case {uuid.uuid4().hex[:8]}?"


async def trace_of(
    exporter: InMemorySpanExporter, trace_id: str, *, ended: tuple[str, ...] = ("chat turn", "POST /api/v1/chat")
) -> list[ReadableSpan]:
    """The trace's spans once its turn span and the request's ended (just after `done` was sent)."""
    for _ in range(100):
        spans = [s for s in exporter.get_finished_spans() if format_trace_id(s.context.trace_id) == trace_id]
        if set(ended) <= {span.name for span in spans}:
            return spans
        await asyncio.sleep(0.05)
    raise AssertionError(f"no finished turn span in trace {trace_id}")


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, (name, [span.name for span in spans])
    return found[0]


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return sorted(
        (s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id),
        key=lambda s: s.start_time or 0,
    )


def seconds(span: ReadableSpan) -> float:
    assert span.start_time is not None and span.end_time is not None
    return (span.end_time - span.start_time) / 1e9


def assert_private(spans: list[ReadableSpan], *texts: str) -> None:
    """No attribute or event of any span (ours, SQL, Redis, HTTP) carries the question or the answer."""
    for span in spans:
        values: list[Any] = list((span.attributes or {}).values())
        values += [value for event in span.events for value in (event.attributes or {}).values()]
        for text in texts:
            assert not any(text in str(value) for value in values), (span.name, span.attributes)


async def test_m8_a_turn_that_falls_back_is_one_trace_with_a_span_per_phase(
    traced_app: LiveApp, upstream: ScriptedOpenAI, exporter: InMemorySpanExporter
) -> None:
    upstream.enqueue(Script(status=500))  # the first tier fails before its first token: the extractive answers
    asked = question("fed")
    async with traced_app.client() as client:
        reply = await post_chat(client, {"query": asked, "creator": HAZEL})
    done = reply.stream.done
    assert done["cascade_tier"] == EXTRACTIVE and done["skipped"] == [{"tier": "upstream", "reason": "status_5xx"}]
    assert isinstance(done["trace_id"], str) and len(done["trace_id"]) == 32
    spans = await trace_of(exporter, done["trace_id"])

    turn = one(spans, "chat turn")
    assert turn.parent is not None and one(spans, "POST /api/v1/chat").context.span_id == turn.parent.span_id
    phases = [span.name for span in children(spans, turn)]
    for phase in ("admission", "history", "search", "coverage", "chat scripted", "chat extractive", "claim check",
                  "final write"):  # fmt: skip
        assert phase in phases, phases
    # In the order they ran: admission, prepare's history and search, then the tiers, the check, the write.
    assert phases.index("admission") < phases.index("history") < phases.index("chat scripted")
    assert phases.index("chat scripted") < phases.index("chat extractive") < phases.index("final write")
    assert [s.name for s in children(spans, one(spans, "admission"))] == ["rate limits", "stream slot"]
    assert [s.name for s in children(spans, one(spans, "search"))] == ["embed query", "index search"]
    for span in spans:
        assert seconds(span) >= 0, span.name
    assert 0 < seconds(one(spans, "search")) < seconds(turn)
    assert turn.attributes is not None
    assert turn.attributes[tracing.TURN_STATUS] == "done" and turn.attributes[tracing.TIER] == EXTRACTIVE
    assert turn.attributes[tracing.CONVERSATION] == reply.conversation_id
    assert turn.attributes[tracing.MESSAGE] == done["message_id"]

    failed = one(spans, "chat scripted")  # the tier tried first, and why it was passed over
    assert failed.attributes is not None and failed.status.status_code is StatusCode.ERROR
    assert failed.attributes[tracing.TIER_SKIPPED] == "status_5xx" and failed.attributes["error.type"] == "status_5xx"
    assert failed.attributes["gen_ai.operation.name"] == "chat"
    assert failed.attributes["gen_ai.request.model"] == "scripted"
    answered = one(spans, "chat extractive")
    assert answered.attributes is not None and answered.status.status_code is not StatusCode.ERROR
    assert answered.attributes["gen_ai.provider.name"] == "extractive"
    assert answered.attributes["gen_ai.usage.input_tokens"] == done["usage"]["prompt_tokens"]
    assert answered.attributes["gen_ai.usage.output_tokens"] == done["usage"]["completion_tokens"]
    assert answered.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    first = one(spans, "first token")
    assert first.parent is not None and first.parent.span_id == answered.context.span_id
    assert first.start_time == answered.start_time and seconds(first) <= seconds(answered)
    # SQL statements hang under the phases that ran them (the final write's own).
    assert any(children(spans, one(spans, "final write")))
    assert_private(spans, asked, reply.stream.text)


async def test_m8_a_stopped_turn_ends_its_spans_as_stopped(
    traced_app: LiveApp, upstream: ScriptedOpenAI, exporter: InMemorySpanExporter
) -> None:
    upstream.enqueue(Script(tokens=WORDS, token_interval=0.05))
    async with traced_app.client() as client:
        async with client.stream("POST", "/api/v1/chat", json={"query": question("warm")}) as response:
            conversation_id = response.headers["x-conversation-id"]
            chunks, raw = response.aiter_raw(), b""
            while len(parse_sse(raw, complete=False).tokens) < 2:
                raw += await anext(chunks)
            assert (await client.post(f"/api/v1/conversations/{conversation_id}/stop")).json() == {"stopped": True}
            async for chunk in chunks:
                raw += chunk
    done = parse_sse(raw).done
    assert done["finish_reason"] == "stopped"
    spans = await trace_of(exporter, done["trace_id"])
    turn = one(spans, "chat turn")
    assert turn.attributes is not None and turn.status.status_code is not StatusCode.ERROR
    assert turn.attributes[tracing.TURN_STATUS] == "stopped" and turn.attributes[tracing.FINISH_REASON] == "stopped"
    model = one(spans, "chat scripted")
    assert model.attributes is not None and model.attributes["gen_ai.response.finish_reasons"] == ("stopped",)
    generated = model.attributes["gen_ai.usage.output_tokens"]
    assert isinstance(generated, int) and generated >= 2
    assert (model.end_time or 0) <= (one(spans, "final write").end_time or 0)
    async with traced_app.db() as db:
        assert (await settled(db, conversation_id)).messages[-1].status == "stopped"


async def test_m8_an_mcp_ask_is_traced_like_a_chat_turn(
    traced_app: LiveApp, upstream: ScriptedOpenAI, exporter: InMemorySpanExporter
) -> None:
    async with mcp_client(traced_app) as client:
        answer = payload(await client.call_tool("ask", {"question": question("mcp"), "creator": HAZEL}))
    spans = await trace_of(exporter, answer["trace_id"], ended=("chat turn",))
    turn = one(spans, "chat turn")
    assert turn.attributes is not None and turn.attributes[tracing.SURFACE] == "mcp"
    assert turn.attributes[tracing.CONVERSATION] == answer["conversation_id"]
    phases = [span.name for span in children(spans, turn)]
    assert {"admission", "history", "search", "chat scripted", "claim check", "final write"} <= set(phases), phases


async def test_m8_the_trace_id_is_in_the_logs(exporter: InMemorySpanExporter) -> None:
    stamp = tracing.TraceIds()
    outside = logging.LogRecord("lorechat", logging.WARNING, __file__, 1, "outside", None, None)
    stamp.filter(outside)
    with tracing.span("a phase") as span:
        inside = logging.LogRecord("lorechat", logging.WARNING, __file__, 1, "inside", None, None)
        stamp.filter(inside)
    expected = f" trace={format_trace_id(span.get_span_context().trace_id)}"
    assert getattr(outside, "trace", None) == "" and getattr(inside, "trace", None) == expected


def test_m8_an_ingest_run_is_a_trace_of_its_own(
    exporter: InMemorySpanExporter, shared_embedder: Embedder, tmp_path: Path
) -> None:
    folder = tmp_path / "content" / "ada"
    folder.mkdir(parents=True)
    (folder / "creator.yaml").write_text("name: Ada\n", encoding="utf-8")
    (folder / "notes.md").write_text("# Notes\n\nRye ferments faster than wheat.\n", encoding="utf-8")
    store = EdgeStore(tmp_path / "data" / "index", hnsw_ef=128)
    try:
        retriever = Retriever(embedder=shared_embedder, store=store, settings=RetrievalSettings())
        report = indexer(retriever, tmp_path / "data", chunking=ChunkingSettings()).ingest([tmp_path / "content"])
    finally:
        store.close()
    assert report.added == 1
    [run] = [span for span in exporter.get_finished_spans() if span.name == "ingest run"]
    assert run.parent is None and run.attributes is not None and run.attributes["lorechat.ingest.added"] == 1
    spans = [span for span in exporter.get_finished_spans() if span.context.trace_id == run.context.trace_id]
    assert [span.name for span in children(spans, run)] == ["parse", "embed chunks", "index write", "catalog"]


def test_m6_content_is_traced_only_when_asked(exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch) -> None:
    for include in (False, True):
        monkeypatch.setattr(tracing._state, "include_content", include)
        turn = tracing.start_turn(surface="test", creator=None, question="What is the secret?")
        assert isinstance(turn, tracing.TurnTrace)
        trace_id = turn.trace_id
        turn.ended(status="done", finish_reason="stop", tier=None, error=None, answer_chars=0)
        [span] = [s for s in exporter.get_finished_spans() if format_trace_id(s.context.trace_id) == trace_id]
        assert span.attributes is not None and span.attributes[tracing.QUESTION_CHARS] == len("What is the secret?")
        assert (span.attributes.get(tracing.QUESTION) == "What is the secret?") is include


def test_m7_tracing_off_costs_nothing_per_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    """With tracing off every helper hands back the one shared no-op: no span, no allocation (the default)."""
    state = tracing._State()
    saved = tracing._state
    tracing._state = state
    try:
        assert tracing.span("x") is tracing.NO_SPAN
        assert tracing.start_turn(surface="api", creator=None, question="q") is tracing.NO_TRACE
        assert tracing.tier_attempt(object()) is tracing.NO_ATTEMPT and tracing.current_trace_id() is None
        assert tracing.NO_TRACE.trace_id is None
    finally:
        tracing._state = saved
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert not tracing.wanted(TracingSettings())
