"""F14: the database goes away after start (dropped under the running app): every route answers 503 with
Retry-After (chat, feedback, conversations, the dashboard, its exports and forms), like /readyz; never 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

from tests.backend.api.harness import AsgiApp, Backend, asgi_app, extractive_tier
from tests.backend.api.streams import assert_error, post_chat
from tests.conftest import PG_URL
from tests.databases import asyncpg_dsn, throwaway_database

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.services]

ADMIN_TOKEN = "curator-token-" + "f14" * 8
QUESTION = "What is the starter called?"


@pytest.fixture(scope="module")
def doomed_url(api_pg_url: str) -> Iterator[str]:
    """A database of this module's own: the test drops it under the running app."""
    with throwaway_database(PG_URL, prefix="lorechat_f14") as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def doomed(
    doomed_url: str, api_redis_url: str, api_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[AsgiApp, str]]:
    async with asgi_app(
        template=api_index,
        workdir=tmp_path_factory.mktemp("database-gone"),
        backend=Backend("production", doomed_url, api_redis_url),
        tiers=[extractive_tier()],
        admin_token=ADMIN_TOKEN,
    ) as app:
        yield app, doomed_url


async def _drop(url: str) -> None:
    name = make_url(url).database
    connection = await asyncpg.connect(asyncpg_dsn(PG_URL), timeout=10)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def test_f14_every_route_answers_503_with_retry_after_once_the_database_is_dropped(
    doomed: tuple[AsgiApp, str],
) -> None:
    app, url = doomed
    async with app.client() as visitor, app.client() as curator:
        reply = await post_chat(visitor, {"query": QUESTION})
        assert reply.status == 200
        conversation_id = reply.headers["x-conversation-id"]
        assert (await curator.post("/admin/login", data={"token": ADMIN_TOKEN})).status_code == 303
        page = await curator.get("/admin")
        assert page.status_code == 200
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]

        await _drop(url)
        await asyncio.sleep(0.2)

        replies = {
            "chat": await post_chat(visitor, {"query": QUESTION}),
            "chat again": await post_chat(visitor, {"query": QUESTION, "conversation_id": conversation_id}),
            "conversation": await visitor.get(f"/api/v1/conversations/{conversation_id}"),
            "feedback": await visitor.post("/api/v1/messages/AAAAAAAAAAAAAAAAAAAAAA/feedback", json={"rating": "down"}),
            "dashboard": await curator.get("/admin"),
            "export": await curator.get("/admin/export/gaps.json"),
            "export csv": await curator.get("/admin/export/feedback.csv"),
            "resolve": await curator.post("/admin/gaps/AAAAAAAAAAAAAAAAAAAAAA/resolve", data={"csrf": csrf}),
        }
        for name, reply_ in replies.items():
            body = assert_error(reply_, 503, "database_unavailable")
            assert body["retryable"] is True and int(reply_.headers["retry-after"]) >= 1, name
        ready = await visitor.get("/readyz")
        assert ready.status_code == 503
