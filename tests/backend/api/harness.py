"""The HTTP test harness: the real app on a real uvicorn in a thread, clients with their own addresses, JWTs."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from backend.app import create_app
from backend.settings import (
    AuthSettings,
    CacheSettings,
    ChunkingSettings,
    CircuitSettings,
    DatabaseSettings,
    EmbeddingSettings,
    ExtractiveTierSettings,
    IndexSettings,
    LimitSettings,
    LLMSettings,
    McpSettings,
    OpenAITierSettings,
    RedisSettings,
    RetrievalSettings,
    ServerSettings,
    Settings,
    TierSettings,
    TracingSettings,
)
from backend.storage.cache import redis_client
from backend.storage.db import create_engine, session_factory
from backend.storage.repository import Sessions
from pipeline.indexer import Indexer
from tests.data_dirs import copy_data_dir
from tests.fakes import ScriptedOpenAI
from tests.live_server import LiveServer

JWT_SECRET = "api-tests-secret-with-enough-bytes-for-hs256"
JWT_AUDIENCE = "lorechat-api-tests"
UPSTREAM = "upstream"  # the openai tier, served by the scripted fake
EXTRACTIVE = "extractive"

# Every client connects from its own loopback address (Linux routes all of 127/8 to lo), so rate-limit keys
# never collide between tests, runs or other users of the same Redis; this run's addresses share one /16.
SESSION_NET = random.randint(2, 254)
_PEERS = itertools.count(1)


def new_peer() -> str:
    n = next(_PEERS)
    return f"127.{SESSION_NET}.{n // 250}.{n % 250 + 1}"


@dataclass(frozen=True)
class Backend:
    """A deployment shape: "production" (PostgreSQL + Redis) or "embedded" (SQLite + in-process)."""

    name: str
    database_url: str  # "" → SQLite in the app's data dir
    redis_url: str  # "" → in-process cache and limits


def upstream_tier(fake: ScriptedOpenAI, *, name: str = UPSTREAM, first: float = 1.0, idle: float = 2.0) -> TierSettings:
    return OpenAITierSettings(
        name=name,
        base_url=fake.base_url,
        model="scripted",
        max_tokens=24,  # the fake's default echo stays short
        max_answer_chars=0,  # scripts run past max_tokens as a runaway would: the cap has tests of its own
        first_token_timeout_seconds=first,
        idle_timeout_seconds=idle,
    )


def extractive_tier() -> TierSettings:
    return ExtractiveTierSettings(
        name=EXTRACTIVE,
    )


NO_LIMITS = LimitSettings(user_per_hour=0, ip_per_hour=0, creator_per_hour=0, concurrent_streams_per_ip=64)
TEST_SERVER = ServerSettings(keepalive_seconds=0.2, send_timeout_seconds=5, max_body_bytes=4096)


def make_settings(
    *,
    data_dir: Path,
    backend: Backend,
    tiers: Sequence[TierSettings],
    limits: LimitSettings = NO_LIMITS,
    circuit: CircuitSettings | None = None,
    redis_timeout: float = 0.5,
    server: ServerSettings | None = None,
    index: IndexSettings | None = None,
    retrieval: RetrievalSettings | None = None,
    admin_token: str | None = None,
    pool_size: int = 5,
    mcp: McpSettings | None = None,
    tracing: TracingSettings | None = None,
) -> Settings:
    # Every section is passed as a model so nothing comes from the checkout's config.yaml.
    return Settings(
        data_dir=data_dir,
        embedding=EmbeddingSettings(),
        chunking=ChunkingSettings(),
        index=index or IndexSettings(),
        retrieval=retrieval or RetrievalSettings(k=4),
        database=DatabaseSettings(url=backend.database_url, pool_size=pool_size),
        redis=RedisSettings(url=backend.redis_url, timeout_seconds=redis_timeout),
        cache=CacheSettings(history_ttl_seconds=120),
        limits=limits,
        auth=AuthSettings(
            jwt_secret=SecretStr(JWT_SECRET),
            jwt_audience=JWT_AUDIENCE,
            admin_token=SecretStr(admin_token) if admin_token else None,
        ),
        llm=LLMSettings(tiers=list(tiers), circuit=circuit or CircuitSettings(failure_threshold=100)),
        server=server or TEST_SERVER,
        mcp=mcp or McpSettings(),
        tracing=tracing or TracingSettings(),
    )


@dataclass
class LiveApp:
    base_url: str
    settings: Settings
    server: LiveServer | None = None

    def client(self, *, peer: str | None = None, token: str | None = None, timeout: float = 20) -> httpx.AsyncClient:
        """A client connecting from `peer` (default: a fresh address of its own)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = httpx.AsyncHTTPTransport(local_address=peer or new_peer())
        return httpx.AsyncClient(base_url=self.base_url, transport=transport, headers=headers, timeout=timeout)

    @asynccontextmanager
    async def db(self) -> AsyncIterator[Sessions]:
        """Sessions on the app's own database, from the test's event loop."""
        engine = create_engine(self.settings)
        try:
            yield session_factory(engine)
        finally:
            await engine.dispose()


@contextmanager
def live_app(
    *, template: Path, workdir: Path, backend: Backend, tiers: Sequence[TierSettings], **options: Any
) -> Iterator[LiveApp]:
    """The app on its own copy of the ingested data dir (an Edge shard takes one handle per process)."""
    data_dir = workdir / "data"
    copy_data_dir(template, data_dir)
    settings = make_settings(data_dir=data_dir, backend=backend, tiers=tiers, **options)
    # Composed like `lorechat serve`: the pipeline's ingest behind the admin route.
    server = LiveServer(create_app(settings, ingest=partial(Indexer.from_settings, settings)))
    server.start()
    try:
        yield LiveApp(base_url=f"http://127.0.0.1:{server.port}", settings=settings, server=server)
    finally:
        server.stop()


def make_token(
    sub: str,
    *,
    secret: str = JWT_SECRET,
    audience: str | None = JWT_AUDIENCE,
    expires_in: float = 600,
    algorithm: str = "HS256",
) -> str:
    claims: dict[str, Any] = {"sub": sub, "exp": int(time.time() + expires_in)}
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret if algorithm != "none" else None, algorithm=algorithm)


class TcpProxy:
    """A TCP forwarder in front of a real service (PostgreSQL, Redis) that a test can cut and restore.

    `cut()` stops listening and resets every open connection, as if the service died; `restore()` listens
    again on the same port. It runs its own event loop in a thread, so it works whatever the test awaits.
    """

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._listener: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0  # accepted since start

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._listen())

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        self._listener = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._listener.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for writer in list(self._writers):
            writer.transport.abort()  # RST: the client sees its connection die, not a polite close
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            target_reader, target_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, target_writer}
        await asyncio.gather(_pipe(reader, target_writer), _pipe(target_reader, writer))
        self._writers -= {writer, target_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()  # one side ended: end the other (a no-op on a connection `cut` already reset)


async def assert_no_leaks(*, pg_url: str, redis_url: str) -> None:
    """INV-4 once a row is over: no app session busy or idle inside a transaction on `pg_url`'s database, and
    no key of this run's limiter (its client addresses) or of the history cache without an expiry (R4)."""
    url = make_url(pg_url)
    connection = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        busy = await connection.fetch(
            "SELECT state, left(query, 80) AS query FROM pg_stat_activity WHERE datname = $1 "
            "AND pid <> pg_backend_pid() AND (state LIKE 'idle in transaction%' "
            "OR (application_name = 'lorechat' AND state <> 'idle'))",
            url.database,
        )
    finally:
        await connection.close()
    assert not busy, [dict(row) for row in busy]
    client = redis_client(redis_url, timeout_seconds=5)
    try:
        for pattern in (f"*/127.{SESSION_NET}.*", "lorechat:history:*"):
            async for key in client.scan_iter(match=pattern, count=1000):
                assert await client.ttl(key) != -1, f"{key!r} never expires"
    finally:
        await client.aclose()


@dataclass
class AsgiApp(LiveApp):
    """The same app served in process through httpx's ASGI transport: no uvicorn thread, no socket. For plain
    request/response tests (validation tables, 4xx); responses arrive whole, so stream-lifecycle tests (a
    client leaving, stop, keepalive, send timeouts) keep the real server."""

    app: Any = None

    def client(self, *, peer: str | None = None, token: str | None = None, timeout: float = 20) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = httpx.ASGITransport(app=self.app, client=(peer or new_peer(), 50_000))
        return httpx.AsyncClient(base_url=self.base_url, transport=transport, headers=headers, timeout=timeout)


@asynccontextmanager
async def asgi_app(
    *, template: Path, workdir: Path, backend: Backend, tiers: Sequence[TierSettings], **options: Any
) -> AsyncIterator[AsgiApp]:
    """The app in process on its own copy of the ingested data dir, its lifespan run by asgi-lifespan."""
    from asgi_lifespan import LifespanManager

    data_dir = workdir / "data"
    copy_data_dir(template, data_dir)
    settings = make_settings(data_dir=data_dir, backend=backend, tiers=tiers, **options)
    app = create_app(settings, ingest=partial(Indexer.from_settings, settings))
    async with LifespanManager(app, startup_timeout=120) as manager:
        yield AsgiApp(base_url="http://lorechat.test", settings=settings, app=manager.app)
