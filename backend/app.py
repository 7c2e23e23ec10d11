"""The FastAPI application: long-lived resources built once in the lifespan, thin routes, one error shape."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypedDict

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from backend import tracing
from backend.api import chat, conversations, creators, health, resume, site
from backend.api.errors import install_error_handlers
from backend.api.middleware import BodySizeLimit, RequestContext
from backend.catalog import Catalog
from backend.chat.cascade import Cascade
from backend.chat.service import ChatService
from backend.chat.tiers.factory import build_tiers
from backend.credential_guard import CredentialGuard
from backend.curation import answers_routes, channels_routes, dashboard_routes, feedback_routes, ingest_routes
from backend.curation.answers import CuratedAnswers, question_embedder
from backend.curation.channels_routes import ChannelRunner
from backend.curation.dashboard import JobsReader
from backend.curation.feedback_routes import feedback_limiter
from backend.curation.ingest_routes import IngestRunner
from backend.grounding.sentences import SentenceVectors
from backend.limits import RateLimiter
from backend.mcp.server import McpRoute, McpServer
from backend.redis_health import RedisHealth
from backend.retrieval.embedder import for_serving, get_embedder
from backend.retrieval.search import Retriever
from backend.retrieval.search_cache import search_cache
from backend.retrieval.stores import open_store
from backend.settings import Settings, get_settings
from backend.shared_catalog import SharedCatalog, adopt_legacy_catalog
from backend.storage import repository
from backend.storage.cache import HistoryCache, build_history_cache, redis_client
from backend.storage.db import create_engine, migrate, session_factory
from backend.storage.leases import Leases
from backend.storage.repository import Sessions
from backend.stream.running import SHUTDOWN, RunningTurns
from backend.stream.server import ExitSignal
from backend.stream.stop_bus import StopBus
from backend.stream.stream_log import StreamLog, build_stream_log
from backend.stream_slots import SharedStreamSlots, StreamSlots

log = logging.getLogger("lorechat")


class State(TypedDict):
    settings: Settings
    retriever: Retriever
    sessions: Sessions
    cache: HistoryCache
    limiter: RateLimiter
    feedback_limiter: RateLimiter
    credentials: CredentialGuard
    slots: StreamSlots
    cascade: Cascade
    running: RunningTurns
    stop_bus: StopBus
    stream_log: StreamLog | None
    chat: ChatService
    catalog: Catalog
    shared_catalog: SharedCatalog
    curated: CuratedAnswers
    engine: object


def create_app(
    settings: Settings | None = None,
    *,
    wait_for_models_seconds: float = 0.0,
    ingest: IngestRunner | None = None,
    channels: ChannelRunner | None = None,
    jobs: JobsReader | None = None,
) -> FastAPI:
    """The app. `ingest` (the pipeline's ingest function) enables `POST /api/v1/admin/ingest`, `channels` (the
    pipeline's channel sync) the channel routes and, with `channels.scheduler`, syncing due channels in the
    background, `jobs` (the Temporal jobs client, with `jobs.engine: temporal`) the jobs table in /admin; the
    composition root passes them, so the backend itself never imports the pipeline."""
    settings = settings or get_settings()
    # OpenTelemetry, once per process, when tracing.enabled or OTEL_EXPORTER_OTLP_ENDPOINT (backend/tracing.py).
    tracing.setup(settings.tracing)
    mcp = McpServer(settings) if settings.mcp.enabled else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        store = open_store(settings)
        engine = create_engine(settings)
        # Source sentences embedded once for the extractive tier, the coverage and the claim checks alike; the
        # model is the retriever's own (get_embedder is per process), resolved on first use.
        embedding = for_serving(settings.embedding)
        vectors = SentenceVectors(partial(get_embedder, embedding))
        # A curated answer that fits the question is served first (the curated tier), before llm.tiers.
        tiers = build_tiers(settings.llm, vectors=vectors, curated=settings.curated.enabled)
        cascade = Cascade(tiers, settings.llm.circuit)
        running = RunningTurns(send_timeout_seconds=settings.server.send_timeout_seconds)
        # One Redis client and one view of its health for every Redis user: the history cache, rate limits and,
        # shared by replicas (scale-out), stream slots and stops. Without Redis all of them stay in process.
        shared = (
            redis_client(settings.redis.url, timeout_seconds=settings.redis.timeout_seconds)
            if settings.redis.url
            else None
        )
        health = RedisHealth()
        tracing.instrument_engine(engine)  # SQL and Redis calls as spans under the turn's phases (when tracing)
        tracing.instrument_redis(shared)
        cache = build_history_cache(settings, client=shared, health=health)
        limiter = RateLimiter(settings, client=shared, health=health)
        rating_limiter = feedback_limiter(settings, client=shared, health=health)
        credentials = CredentialGuard(settings, client=shared, health=health)
        max_streams = settings.limits.concurrent_streams_per_ip
        slots = (
            SharedStreamSlots(shared, max_streams, timeout_seconds=settings.redis.timeout_seconds, health=health)
            if shared is not None
            else StreamSlots(max_streams)
        )
        stop_bus = StopBus(
            running, client=shared, url=settings.redis.url, timeout_seconds=settings.redis.timeout_seconds
        )
        stream_log = build_stream_log(settings, shared, health=health)
        background: list[asyncio.Task[None]] = []
        lease_keeper: asyncio.Task[None] | None = None
        try:
            embedder = await anyio.to_thread.run_sync(partial(get_embedder, embedding))
            await anyio.to_thread.run_sync(embedder.embed_query, "warm up")
            log.info("embedder %s; questions embedded in %s", embedder.embedder_id, embedder.query_precision)
            await migrate(engine)
            sessions = session_factory(engine)
            reaped = await repository.reap_streaming(sessions, older_than_seconds=settings.server.reaper_seconds)
            if reaped:
                log.warning("marked %d answers left streaming by an earlier process as interrupted", reaped)
            # Renews this process's streaming answers and reaps the lapsed ones of dead processes (F13).
            leases = Leases(
                sessions, seconds=settings.server.stream_lease_seconds, reaper_seconds=settings.server.reaper_seconds
            )
            lease_keeper = asyncio.get_running_loop().create_task(leases.run(), name="lorechat-leases")
            # SIGTERM (backend/stream/server.py) stops every open stream at once: each stores its partial answer and
            # ends with a retryable error while uvicorn waits for the connections to close (F12).
            app.state.exit_signal.bind(asyncio.get_running_loop(), partial(running.stop_all, reason=SHUTDOWN))
            for name, work in (
                ("lorechat-slots", slots.run()),
                ("lorechat-stops", stop_bus.run()),
                *([("lorechat-stream-log", stream_log.run())] if stream_log is not None else []),
                ("lorechat-stream-watchdog", running.watch()),
            ):
                background.append(asyncio.get_running_loop().create_task(work, name=name))
            # Local models start in their own processes now, not on the first visitor's question; the API
            # serves meanwhile (a starting model is skipped). `lorechat ask` waits for them, bounded.
            await cascade.warm(wait_seconds=wait_for_models_seconds)
            # The catalog is in the database, shared by every replica; an install from before keeps its creators.
            await adopt_legacy_catalog(sessions, settings.data_dir)
            shared_catalog = SharedCatalog(sessions)
            await shared_catalog.refresh(force=True)
            catalog = shared_catalog.catalog
            # A search asked again is answered from memory until the index changes: this process's own writes (the
            # store's revision) or an ingest anywhere (the shared catalog's version, bumped after the index writes).
            answers_again = search_cache(settings, store, follows=lambda: shared_catalog.version)
            retriever = Retriever(embedder=embedder, store=store, settings=settings.retrieval, cache=answers_again)
            if channels is not None and settings.channels.scheduler:  # due channels synced here (embedded index)
                every = settings.channels.scheduler_seconds
                due = channels_routes.schedule(
                    channels, retriever=retriever, sessions=sessions, shared_catalog=shared_catalog, every_seconds=every
                )
                background.append(asyncio.get_running_loop().create_task(due, name="lorechat-channels"))
            # The curator's answers, phrasings embedded by the retrieval model, re-read when any replica writes them.
            curated = CuratedAnswers(
                sessions,
                question_embedder(embedder.embed_query_full),
                settings.curated,
                creators=lambda slug: shared_catalog.catalog.creator(slug),
            )
            await curated.refresh(force=True)
            chat_service = ChatService(
                settings=settings,
                retriever=retriever,
                sessions=sessions,
                cache=cache,
                cascade=cascade,
                running=running,
                leases=leases,
                vectors=vectors,
                curated=curated,
            )
            yield State(
                settings=settings,
                retriever=retriever,
                sessions=sessions,
                cache=cache,
                limiter=limiter,
                feedback_limiter=rating_limiter,
                credentials=credentials,
                slots=slots,
                cascade=cascade,
                running=running,
                stop_bus=stop_bus,
                stream_log=stream_log,
                chat=chat_service,
                catalog=catalog,
                shared_catalog=shared_catalog,
                curated=curated,
                engine=engine,
            )
        finally:
            with anyio.CancelScope(shield=True):
                for task in [*background, *([lease_keeper] if lease_keeper is not None else [])]:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                running.stop_all(reason="shutdown")
                await cascade.aclose()
                await cache.close()
                await limiter.close()
                await rating_limiter.close()
                if stream_log is not None:
                    await stream_log.aclose()
                if shared is not None:
                    await shared.aclose()
                await engine.dispose()
                store.close()

    @asynccontextmanager
    async def lifespan_with_mcp(app: FastAPI) -> AsyncIterator[State]:
        assert mcp is not None
        async with lifespan(app) as state, mcp.running():  # the MCP SDK's session manager, inside the resources
            yield state

    app = FastAPI(
        title="lorechat",
        version="0.1.0",
        summary="Retrieval-augmented chat over creators' content",
        lifespan=lifespan if mcp is None else lifespan_with_mcp,
    )
    app.state.settings = settings
    app.state.exit_signal = ExitSignal()
    app.state.ingest = ingest
    app.state.channels = channels
    app.state.jobs = jobs
    install_error_handlers(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.server.cors_origins,
        allow_credentials=False,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Content-Type", "Authorization", "Last-Event-ID"],
        expose_headers=["X-Conversation-Id", "X-Request-ID", "Retry-After"],
        max_age=600,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.server.max_body_bytes)
    app.add_middleware(RequestContext)
    app.router.routes.append(chat.ChatRoute())
    if mcp is not None:  # /mcp for agents (backend/mcp/), off unless mcp.enabled
        app.router.routes.append(McpRoute(mcp))
    for module in (resume, conversations, creators, health, ingest_routes, site, feedback_routes, dashboard_routes):
        app.include_router(module.router)
    app.include_router(answers_routes.router)
    app.include_router(channels_routes.router)
    fastapi_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        # FastAPI describes its own routes only; the schema is built once and kept, as FastAPI keeps it.
        if app.openapi_schema is None:
            app.openapi_schema = chat.document(fastapi_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    tracing.instrument_app(app)  # a server span per request, outermost (nothing when tracing is off)
    return app
