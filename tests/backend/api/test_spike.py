"""A traffic spike on both databases: 200 concurrent turns, then a burst of 50 new turns at once, zero errors.

The embedded default (SQLite) used to fail turns with `database_unavailable` at 200 concurrent streams:
writers collided on SQLite's single write lock. PostgreSQL gets the same test.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import httpx

from backend.settings import DatabaseSettings, LimitSettings, RetrievalSettings, ServerSettings
from backend.storage.repository import get_conversation
from tests.backend.api.harness import Backend, live_app, upstream_tier
from tests.backend.api.streams import parse_sse
from tests.fakes import Script, ScriptedOpenAI

QUESTION = "How long should the dough rest?"
WORDS = [f" w{i}" for i in range(8)]
CONCURRENT, BURST, CLIENTS = 200, 50, 4


async def _turn(client: httpx.AsyncClient, delay: float) -> bytes:
    await asyncio.sleep(delay)
    async with client.stream("POST", "/api/v1/chat", json={"query": QUESTION}) as response:
        body = await response.aread()
        assert response.status_code == 200, body
        return body


async def test_two_hundred_concurrent_turns_and_a_burst_of_fifty_have_no_database_errors(
    backend: Backend, fake: ScriptedOpenAI, upstream: ScriptedOpenAI, api_index: Path, tmp_path: Path
) -> None:
    # Every turn writes twice (question + placeholder before the stream, the answer after it); tokens every
    # 20 ms keep all 200 open together, so their final writes land close to one another.
    upstream.default = Script(tokens=WORDS, first_token_delay=0.5, token_interval=0.02)
    limits = LimitSettings(user_per_hour=0, ip_per_hour=0, creator_per_hour=0, concurrent_streams_per_ip=500)
    with live_app(
        template=api_index,
        workdir=tmp_path,
        backend=backend,
        tiers=[upstream_tier(fake, first=20, idle=10)],
        limits=limits,
        server=ServerSettings(keepalive_seconds=1, send_timeout_seconds=10, max_body_bytes=4096),
        retrieval=RetrievalSettings(k=4, mode="bm25", max_waiting=1000),
        pool_size=DatabaseSettings().pool_size,  # the default install's pool (PostgreSQL; SQLite has one writer)
    ) as app:
        async with AsyncExitStack() as stack:
            pool = [await stack.enter_async_context(app.client(timeout=60)) for _ in range(CLIENTS)]
            spread = [_turn(pool[i % CLIENTS], i * 2.0 / CONCURRENT) for i in range(CONCURRENT)]
            burst = [_turn(pool[i % CLIENTS], 1.0) for i in range(BURST)]  # 50 at the same instant, mid-spike
            raws = await asyncio.gather(*spread, *burst)
        streams = [parse_sse(raw) for raw in raws]
        errors = [s.terminal.data for s in streams if s.terminal.name != "done"]
        assert errors == [], errors[:3]
        assert all(s.text == "".join(WORDS) for s in streams)
        async with app.db() as sessions:  # every answer stored as streamed (INV-1, INV-2)
            for stream in streams[:: len(streams) // 25]:
                detail = await get_conversation(sessions, conversation_id=stream.done["conversation_id"], owner_id=None)
                assert detail is not None and detail.messages[-1].content == "".join(WORDS)
