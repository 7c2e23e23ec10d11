"""Issue 14, no shared files: an ingest through one replica's admin route puts the catalog in the shared
PostgreSQL, and another replica (its own data dir, no shared file) lists the creators within a second or so,
without a restart. The same for the CLI's ingest on a third host."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest

from backend.retrieval.embedder import Embedder
from backend.retrieval.search import Retriever
from backend.retrieval.stores.edge import EdgeStore
from backend.settings import ChunkingSettings, RetrievalSettings
from tests.backend.api.harness import AsgiApp, Backend, asgi_app, extractive_tier
from tests.conftest import DEMO_CONTENT, PG_URL, indexer
from tests.databases import throwaway_database

pytestmark = pytest.mark.services

ADMIN_TOKEN = "catalog-token-" + "y" * 24


@pytest.fixture
def fresh_pg_url(api_redis_url: str) -> Iterator[str]:
    """A PostgreSQL database whose catalog was never written (asking for api_redis_url checks the services)."""
    with throwaway_database(PG_URL, prefix="lorechat_catalog") as url:
        yield url


def content_of(tmp_path: Path, slug: str) -> Path:
    content = tmp_path / "content"
    shutil.copytree(DEMO_CONTENT / slug, content / slug)
    return content


async def listed(app: AsgiApp) -> list[str]:
    async with app.client() as client:
        response = await client.get("/api/v1/creators")
    assert response.status_code == 200
    return [creator["slug"] for creator in response.json()]


async def seconds_until_listed(app: AsgiApp, slug: str, *, limit: float = 5.0) -> float:
    started = time.monotonic()
    while slug not in await listed(app):
        assert time.monotonic() - started < limit, f"{slug} never showed up on this replica"
        await anyio.sleep(0.1)
    return time.monotonic() - started


async def test_an_ingest_through_one_replica_reaches_the_other(fresh_pg_url: str, tmp_path: Path) -> None:
    backend = Backend("production", fresh_pg_url, "")
    empty = tmp_path / "empty-data-dir"
    empty.mkdir()
    options = {"template": empty, "backend": backend, "tiers": [extractive_tier()], "admin_token": ADMIN_TOKEN}
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(asgi_app(workdir=tmp_path / "a", **options))
        b = await stack.enter_async_context(asgi_app(workdir=tmp_path / "b", **options))
        assert await listed(a) == [] and await listed(b) == []

        async with a.client(token=ADMIN_TOKEN) as admin:
            body = {"paths": [str(content_of(tmp_path, "hazel-marsh"))]}
            report = await admin.post("/api/v1/admin/ingest", json=body, timeout=120)
        assert report.status_code == 200 and report.json()["added"] > 0, report.text

        assert await listed(a) == ["hazel-marsh"]  # the ingesting replica at once
        assert await seconds_until_listed(b, "hazel-marsh") < 2.5  # the other one after its next version check
        assert not (a.settings.data_dir / "catalog.json").exists()


async def test_a_cli_ingest_on_another_host_reaches_a_running_replica(
    fresh_pg_url: str, tmp_path: Path, shared_embedder: Embedder
) -> None:
    empty = tmp_path / "empty-data-dir"
    empty.mkdir()
    backend = Backend("production", fresh_pg_url, "")
    options = {"template": empty, "backend": backend, "tiers": [extractive_tier()]}
    async with asgi_app(workdir=tmp_path / "replica", **options) as app:
        assert await listed(app) == []
        host = tmp_path / "ingest-host"
        store = EdgeStore(host / "index", hnsw_ef=128)
        try:
            retriever = Retriever(embedder=shared_embedder, store=store, settings=RetrievalSettings())
            ingest = indexer(retriever, host, chunking=ChunkingSettings(), database_url=fresh_pg_url).ingest
            report = await anyio.to_thread.run_sync(ingest, [content_of(tmp_path, "tomas-reyes")])
        finally:
            store.close()
        assert report.added > 0 and not report.failed
        assert await seconds_until_listed(app, "tomas-reyes") < 2.5
