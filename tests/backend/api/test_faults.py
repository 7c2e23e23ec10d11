"""Dependency faults over HTTP (F1-F5): Redis and the database failing before or during a stream (F6, the
index: test_index_faults.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy.engine import make_url

from backend.settings import LimitSettings
from backend.storage.cache import redis_client
from backend.storage.records import ConversationDetail
from backend.storage.repository import Sessions
from tests.backend.api.harness import (
    UPSTREAM,
    Backend,
    LiveApp,
    TcpProxy,
    live_app,
    upstream_tier,
)
from tests.backend.api.streams import (
    assert_error,
    assert_turn_stored,
    check_stream,
    metric,
    parse_sse,
    post_chat,
    read_tokens,
    stored_turn,
    timed_chat,
)
from tests.backend.storage.services import closed_port, silent_server
from tests.fakes import Script, ScriptedOpenAI

QUESTION = "What does salt do to the crumb?"
FOLLOW_UP = "And how much salt should the dough get?"
WORDS = [f" word{i}" for i in range(40)]
SLOW = Script(tokens=WORDS, token_interval=0.05)  # two seconds of answer
# Limits on, so every request asks the limiter's Redis (all limits 0 would never touch it).
LIMITED = LimitSettings(user_per_hour=0, ip_per_hour=100_000, creator_per_hour=0, concurrent_streams_per_ip=64)
FALLBACKS = "lorechat_dependency_fallbacks_total"


def dead_redis() -> str:
    return f"redis://127.0.0.1:{closed_port()}/0"


# ---- F1: Redis down before the request


async def test_f1_redis_down_fails_open(
    fake: ScriptedOpenAI, upstream: ScriptedOpenAI, api_index: Path, tmp_path: Path
) -> None:
    backend = Backend("dead-redis", "", dead_redis())
    with live_app(
        template=api_index, workdir=tmp_path, backend=backend, tiers=[upstream_tier(fake)], limits=LIMITED
    ) as app:
        async with app.client() as client, app.db() as db:
            limiter = await metric(client, FALLBACKS, dependency="redis_limiter")
            cache = await metric(client, FALLBACKS, dependency="redis_cache")
            first = await post_chat(client, {"query": QUESTION})
            assert first.stream.done["cascade_tier"] == UPSTREAM
            await assert_turn_stored(db, first, question=QUESTION)
            # The follow-up reads its history from SQL, since the cache cannot answer.
            second = await post_chat(client, {"query": FOLLOW_UP, "conversation_id": first.conversation_id})
            await assert_turn_stored(db, second, question=FOLLOW_UP)
            assert QUESTION in str(upstream.requests[-1]["messages"])
            assert await metric(client, FALLBACKS, dependency="redis_limiter") >= limiter + 2
            assert await metric(client, FALLBACKS, dependency="redis_cache") > cache
            health = await client.get("/healthz")
            ready = await client.get("/readyz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded" and ready.json()["checks"]["redis"] != "ok"


async def test_f1_redis_down_fails_closed_with_503(
    fake: ScriptedOpenAI, upstream: ScriptedOpenAI, api_index: Path, tmp_path: Path
) -> None:
    backend = Backend("dead-redis", "", dead_redis())
    limits = LIMITED.model_copy(update={"on_storage_error": "fail_closed"})
    with live_app(
        template=api_index, workdir=tmp_path, backend=backend, tiers=[upstream_tier(fake)], limits=limits
    ) as app:
        async with app.client() as client:
            replies = [await post_chat(client, {"query": QUESTION}) for _ in range(2)]  # the 2nd in the cooldown
            health = await client.get("/healthz")
    for reply in replies:
        body = assert_error(reply, 503, "limiter_unavailable")
        assert body["retryable"] is True and reply.headers["retry-after"] == str(body["retry_after"])
        assert "x-conversation-id" not in reply.headers  # refused before any turn was stored
    assert health.status_code == 200
    assert upstream.requests == []


# ---- F2: Redis slow (accepts connections, never answers)


async def test_f2_silent_redis_costs_at_most_its_timeout(
    fake: ScriptedOpenAI, upstream: ScriptedOpenAI, api_index: Path, tmp_path: Path
) -> None:
    async with silent_server() as silent_url:
        options: dict[str, Any] = {"template": api_index, "tiers": [upstream_tier(fake)], "limits": LIMITED}
        baseline = live_app(workdir=tmp_path / "baseline", backend=Backend("no-redis", "", ""), **options)
        slow = live_app(workdir=tmp_path / "slow", backend=Backend("silent-redis", "", silent_url), **options)
        with baseline as base_app, slow as slow_app:
            timings = {}
            for name, app in (("baseline", base_app), ("slow", slow_app)):
                async with app.client() as client, app.db() as db:
                    started = time.monotonic()
                    first, first_wait = await timed_chat(client, {"query": QUESTION})
                    await assert_turn_stored(db, first, question=QUESTION)
                    body = {"query": FOLLOW_UP, "conversation_id": first.conversation_id}
                    second, second_wait = await timed_chat(client, body)
                    timings[name] = (first_wait, second_wait, time.monotonic() - started)
                    await assert_turn_stored(db, second, question=FOLLOW_UP)
                    assert first.stream.done["cascade_tier"] == second.stream.done["cascade_tier"] == UPSTREAM
                    if name == "slow":
                        assert await metric(client, FALLBACKS, dependency="redis_cache") > 0
                        assert await metric(client, FALLBACKS, dependency="redis_limiter") > 0
    (base_first, base_second, base_total), (slow_first, slow_second, slow_total) = timings["baseline"], timings["slow"]
    # Each Redis call gives up after settings.redis.timeout_seconds (0.5 s here; 0.1 s by default), and after a
    # failure the limiter and the cache skip Redis for a while: a hanging Redis costs one timeout each, once.
    assert slow_first < base_first + 0.6, timings  # the limiter's timeout
    assert slow_second < base_second + 0.3, timings  # both skip Redis now
    assert slow_total < base_total + 1.5, timings  # the limiter's and the cache's timeout, once each


# ---- F3: Redis lost mid-stream


@pytest.fixture
def redis_proxy(api_redis_url: str) -> Iterator[tuple[TcpProxy, str]]:
    real = urlsplit(api_redis_url)
    with TcpProxy(real.hostname or "127.0.0.1", real.port or 6379) as proxy:
        yield proxy, f"redis://127.0.0.1:{proxy.port}{real.path}"


@pytest.mark.services
async def test_f3_redis_lost_mid_stream_sql_stays_the_truth(
    fake: ScriptedOpenAI,
    upstream: ScriptedOpenAI,
    api_index: Path,
    api_pg_url: str,
    api_redis_url: str,
    redis_proxy: tuple[TcpProxy, str],
    tmp_path: Path,
) -> None:
    proxy, proxied_url = redis_proxy
    backend = Backend("redis-proxy", api_pg_url, proxied_url)
    questions = [QUESTION, FOLLOW_UP, "Does the salt go in before the autolyse?", "What about salt in the levain?"]
    real_redis = redis_client(api_redis_url, timeout_seconds=5)
    with live_app(
        template=api_index,
        workdir=tmp_path,
        backend=backend,
        tiers=[upstream_tier(fake)],
        limits=LIMITED,
        redis_timeout=2.0,  # a cut connection fails at once; a loaded machine must not time out the first turn
    ) as app:
        async with app.client() as client, app.db() as db:
            first = await post_chat(client, {"query": questions[0]})
            await assert_turn_stored(db, first, question=questions[0])
            conversation = first.conversation_id
            key = f"lorechat:history:-:{conversation}"
            assert await real_redis.ttl(key) > 0  # the cache was in use, through the proxy

            upstream.enqueue(SLOW)
            cache_fallbacks = await metric(client, FALLBACKS, dependency="redis_cache")
            body = {"query": questions[1], "conversation_id": conversation}
            async with client.stream("POST", "/api/v1/chat", json=body) as response:
                chunks = response.aiter_raw()
                raw = await read_tokens(chunks, 3)
                proxy.cut()  # every Redis connection dies while tokens stream
                async for chunk in chunks:
                    raw += chunk
            stream = parse_sse(raw)
            check_stream(stream)
            assert stream.done and stream.text == "".join(WORDS)
            answer = (await stored_turn(db, conversation)).messages[-1]
            assert (answer.status, answer.content) == ("done", stream.text)
            assert await metric(client, FALLBACKS, dependency="redis_cache") > cache_fallbacks

            # Redis still down: the next turn is served, its history read from SQL.
            third = await post_chat(client, {"query": questions[2], "conversation_id": conversation})
            await assert_turn_stored(db, third, question=questions[2])
            assert questions[1] in str(upstream.requests[-1]["messages"])

            # Redis back: the cache entry it missed while down must not resurface as history (SQL is the truth).
            proxy.restore()
            fourth = await post_chat(client, {"query": questions[3], "conversation_id": conversation})
            await assert_turn_stored(db, fourth, question=questions[3])
            sent = str(upstream.requests[-1]["messages"])
            assert questions[1] in sent and questions[2] in sent, "stale cached history after Redis came back"
    await real_redis.aclose()


# ---- F4, F5: the database down before the request, or lost mid-stream


@pytest.fixture
def pg_behind_proxy(
    fake: ScriptedOpenAI, api_index: Path, api_pg_url: str, tmp_path: Path
) -> Iterator[tuple[LiveApp, TcpProxy]]:
    """An app whose PostgreSQL connections all pass through a proxy the test can cut (migrated while up)."""
    real = make_url(api_pg_url)
    with TcpProxy(real.host or "127.0.0.1", real.port or 5432) as proxy:
        proxied = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        backend = Backend("pg-proxy", proxied, "")
        with live_app(template=api_index, workdir=tmp_path, backend=backend, tiers=[upstream_tier(fake)]) as app:
            yield app, proxy


@pytest.mark.services
async def test_f4_database_down_is_503_before_any_stream_or_llm_call(
    pg_behind_proxy: tuple[LiveApp, TcpProxy], upstream: ScriptedOpenAI
) -> None:
    app, proxy = pg_behind_proxy
    async with app.client() as client:
        assert (await post_chat(client, {"query": QUESTION})).stream.done  # up, through the proxy
        calls = len(upstream.requests)
        proxy.cut()
        started = time.monotonic()
        reply = await post_chat(client, {"query": QUESTION})
        elapsed = time.monotonic() - started
        ready = await client.get("/readyz")
        health = await client.get("/healthz")
        proxy.restore()
        again = await post_chat(client, {"query": QUESTION})
    body = assert_error(reply, 503, "database_unavailable")
    assert body["retryable"] is True and reply.headers["retry-after"] == str(body["retry_after"])
    assert "x-conversation-id" not in reply.headers
    assert elapsed < 3
    assert len(upstream.requests) == calls + 1  # the refused turn reached no model; only `again` did
    assert ready.status_code == 503 and ready.json()["checks"]["database"] != "ok"
    assert health.status_code == 200
    assert again.stream.done  # the pool recovers once the database is back


@pytest.mark.services
async def test_f5_database_lost_mid_stream_is_a_retryable_error_never_done(
    pg_behind_proxy: tuple[LiveApp, TcpProxy], upstream: ScriptedOpenAI
) -> None:
    app, proxy = pg_behind_proxy
    upstream.enqueue(SLOW)
    async with app.client() as client:
        async with client.stream("POST", "/api/v1/chat", json={"query": QUESTION}) as response:
            assert response.status_code == 200
            conversation = response.headers["x-conversation-id"]
            chunks = response.aiter_raw()
            raw = await read_tokens(chunks, 3)
            proxy.cut()
            async for chunk in chunks:
                raw += chunk
        proxy.restore()
    stream = parse_sse(raw)
    check_stream(stream)
    assert not stream.named("done")
    error = stream.terminal.data
    assert stream.terminal.name == "error" and error["code"] == "database_unavailable" and error["retryable"]
    assert upstream.wait_streams_closed(3)
    # Once the database is back the turn leaves "streaming" (INV-1), so a retry in it is not refused (409).
    async with app.db() as db:
        answer = (await settled_within(db, conversation, 15)).messages[-1]
    assert answer.status in ("interrupted", "error") and stream.text.startswith(answer.content)


async def settled_within(db: Sessions, conversation_id: str, seconds: float) -> ConversationDetail:
    deadline = time.monotonic() + seconds
    while True:
        detail = await stored_turn(db, conversation_id)
        if detail.messages[-1].status != "streaming":
            return detail
        assert time.monotonic() < deadline, "the answer stayed 'streaming' after the database came back"
        await asyncio.sleep(0.1)
