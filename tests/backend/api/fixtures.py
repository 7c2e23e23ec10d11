"""Fixtures for the HTTP suite, a plugin of tests/conftest.py (so the curation and deploy tests share them): one
ingested index per run, two deployments, live apps and the scripted upstream.

"production" runs on real PostgreSQL (a database made for this run, dropped after) and real Redis; its tests
carry the `services` mark. "embedded" runs on SQLite in the app's data dir with in-process cache and limits.
With LORECHAT_REQUIRE_SERVICES=1 an unreachable PostgreSQL or Redis fails the run instead of skipping it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

from backend.retrieval.embedder import Embedder
from backend.retrieval.search import Retriever
from backend.retrieval.stores.edge import EdgeStore
from backend.settings import ChunkingSettings, DatabaseSettings, RedisSettings, RetrievalSettings, Settings
from backend.storage import catalog_store
from backend.storage.cache import redis_client
from backend.storage.repository import Sessions
from pipeline.catalog_update import read_catalog
from pipeline.curator_db import OwnEngine
from tests.backend.api.harness import (
    SESSION_NET,
    AsgiApp,
    Backend,
    LiveApp,
    asgi_app,
    extractive_tier,
    live_app,
    upstream_tier,
)
from tests.conftest import DEMO_CONTENT, PG_URL, REDIS_URL, indexer
from tests.databases import throwaway_database
from tests.fakes import Script, ScriptedOpenAI

# A creator that exists only in this run's index, so its Redis rate-limit key is this run's alone.
LIMIT_CREATOR = f"limits-{uuid.uuid4().hex[:8]}"
DEFAULT_TOKENS = ["Bartholomew", " is", " the", " starter", " [1]", "."]


def _reachable(host: str | None, port: int | None) -> bool:
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def _require_services() -> None:
    pg, redis = make_url(PG_URL), urlsplit(REDIS_URL)
    services = (("PostgreSQL", pg.host, pg.port or 5432), ("Redis", redis.hostname, redis.port or 6379))
    missing = [name for name, host, port in services if not _reachable(host, port)]
    if not missing:
        return
    message = f"{' and '.join(missing)} unreachable ({PG_URL}, {REDIS_URL})"
    if os.environ.get("LORECHAT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"LORECHAT_REQUIRE_SERVICES=1 but {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def api_index(shared_embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir (index + catalog) holding the demo content and the limit-test creator; copied per app."""
    content = tmp_path_factory.mktemp("api-content") / "content"
    shutil.copytree(DEMO_CONTENT, content)
    extra = content / LIMIT_CREATOR
    extra.mkdir()
    (extra / "creator.yaml").write_text("name: Limit Tester\nbio: Exists for rate-limit tests.\n", encoding="utf-8")
    (extra / "notes.md").write_text("# Notes\n\nRye flour ferments faster than wheat flour.\n", encoding="utf-8")
    data_dir = tmp_path_factory.mktemp("api-index")
    store = EdgeStore(data_dir / "index", hnsw_ef=128)
    try:
        chunking = ChunkingSettings()
        retriever = Retriever(embedder=shared_embedder, store=store, settings=RetrievalSettings())
        report = indexer(retriever, data_dir, chunking=chunking).ingest([content])
    finally:
        store.close()  # the apps open their own copies
    assert report.added > 0 and not report.failed, report.as_json()
    return data_dir


@pytest.fixture(scope="session")
def api_pg_url(api_index: Path) -> Iterator[str]:
    """A database of this run's own, dropped at the end, holding the catalog of `api_index`'s ingest (which went
    to the SQLite database in that data dir), as an ingest against this database would have written it."""
    _require_services()
    with throwaway_database(PG_URL, prefix="lorechat_api") as url:
        ingested = read_catalog(OwnEngine(Settings(data_dir=api_index, redis=RedisSettings(url=""))), api_index)

        async def copy(sessions: Sessions) -> bool:
            return await catalog_store.edit_catalog(sessions, lambda listed: listed.creators.update(ingested.creators))

        target = Settings(data_dir=api_index, database=DatabaseSettings(url=url), redis=RedisSettings(url=""))
        assert OwnEngine(target).run(copy)
        yield url


@pytest.fixture(scope="session")
def api_redis_url() -> Iterator[str]:
    """The real Redis; this run's rate-limit keys (its client addresses, its creator) are removed after."""
    _require_services()
    yield REDIS_URL

    async def clean() -> None:
        client = redis_client(REDIS_URL, timeout_seconds=5)
        try:
            for pattern in (f"*/127.{SESSION_NET}.*", f"*{LIMIT_CREATOR}*"):
                async for key in client.scan_iter(match=pattern):
                    await client.delete(key)
        finally:
            await client.aclose()

    asyncio.run(clean())


@pytest.fixture(scope="module", params=[pytest.param("production", marks=pytest.mark.services), "embedded"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "production":
        return Backend("production", request.getfixturevalue("api_pg_url"), request.getfixturevalue("api_redis_url"))
    return Backend("embedded", "", "")


@pytest.fixture(scope="module")
def fake() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI(default=Script(tokens=DEFAULT_TOKENS)) as server:
        yield server


@pytest.fixture
def upstream(fake: ScriptedOpenAI) -> Iterator[ScriptedOpenAI]:
    """The module's fake, reset for this test; afterwards no upstream stream may be left open."""
    fake._scripts.clear()  # scripts a failed test left behind must not answer the next one
    fake.requests.clear()
    assert fake.wait_streams_closed(5)
    yield fake
    assert fake.wait_streams_closed(5), "an upstream stream was left open"
    assert not fake._scripts, "a scripted answer was never requested"


@pytest.fixture(scope="module")
def main_app(
    backend: Backend, fake: ScriptedOpenAI, api_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApp]:
    """The scripted upstream first, the extractive tier behind it; no rate limits."""
    with live_app(
        template=api_index,
        workdir=tmp_path_factory.mktemp(f"app-{backend.name}"),
        backend=backend,
        tiers=[upstream_tier(fake), extractive_tier()],
    ) as app:
        yield app


@pytest.fixture
async def db(main_app: LiveApp) -> AsyncIterator[Sessions]:
    async with main_app.db() as sessions:
        yield sessions


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plain_app(
    backend: Backend, fake: ScriptedOpenAI, api_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AsgiApp]:
    """Like main_app, in process (ASGI): for modules of plain request/response tests, which run in the
    module's event loop (`pytestmark = pytest.mark.asyncio(loop_scope="module")`)."""
    async with asgi_app(
        template=api_index,
        workdir=tmp_path_factory.mktemp(f"asgi-{backend.name}"),
        backend=backend,
        tiers=[upstream_tier(fake), extractive_tier()],
    ) as app:
        yield app


@pytest_asyncio.fixture(loop_scope="module")
async def plain_db(plain_app: AsgiApp) -> AsyncIterator[Sessions]:
    async with plain_app.db() as sessions:
        yield sessions
