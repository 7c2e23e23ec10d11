"""Two API replicas sharing PostgreSQL and Redis: a stop reaches the replica that streams the turn, and the
per-IP stream cap holds across replicas (scale-out; D3, L4)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from backend.settings import LimitSettings
from tests.backend.api.harness import Backend, LiveApp, extractive_tier, live_app, new_peer, upstream_tier
from tests.backend.api.streams import assert_error, parse_sse, read_tokens, settled
from tests.fakes import Script, ScriptedOpenAI

pytestmark = pytest.mark.services

QUESTION = "What does salt do to the crumb?"
WORDS = [f" word{i}" for i in range(200)]
SLOW = Script(tokens=WORDS, token_interval=0.05)  # ten seconds of answer, unless someone stops it
CAP = 2


@pytest.fixture(scope="module")
def replicas(
    fake: ScriptedOpenAI, api_index: Path, api_pg_url: str, api_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveApp, LiveApp]]:
    backend = Backend("production", api_pg_url, api_redis_url)
    limits = LimitSettings(user_per_hour=0, ip_per_hour=0, creator_per_hour=0, concurrent_streams_per_ip=CAP)
    options = {"backend": backend, "tiers": [upstream_tier(fake, idle=5), extractive_tier()], "limits": limits}
    with (
        live_app(template=api_index, workdir=tmp_path_factory.mktemp("replica-a"), **options) as a,
        live_app(template=api_index, workdir=tmp_path_factory.mktemp("replica-b"), **options) as b,
    ):
        yield a, b


async def test_stop_sent_to_another_replica_ends_the_stream_cleanly(
    replicas: tuple[LiveApp, LiveApp], upstream: ScriptedOpenAI
) -> None:
    a, b = replicas
    upstream.enqueue(SLOW)
    peer = new_peer()
    async with a.client(peer=peer) as on_a, b.client(peer=peer) as on_b:
        async with on_a.stream("POST", "/api/v1/chat", json={"query": QUESTION}) as response:
            conversation_id = response.headers["x-conversation-id"]
            chunks = response.aiter_raw()
            raw = await read_tokens(chunks, 2)
            stop = await on_b.post(f"/api/v1/conversations/{conversation_id}/stop")
            assert stop.status_code == 200 and stop.json() == {"stopped": True}
            async for chunk in chunks:
                raw += chunk
        stream = parse_sse(raw)
        assert stream.done["finish_reason"] == "stopped" and 2 <= len(stream.tokens) < len(WORDS)
        assert upstream.wait_streams_closed(2)
        again = await on_b.post(f"/api/v1/conversations/{conversation_id}/stop")
        assert again.json() == {"stopped": False}  # nothing generates there any more, on any replica
    async with b.db() as sessions:
        answer = (await settled(sessions, conversation_id)).messages[-1]
    assert answer.status == "stopped" and answer.content == stream.text  # INV-2


async def test_the_per_ip_stream_cap_holds_across_replicas(
    replicas: tuple[LiveApp, LiveApp], upstream: ScriptedOpenAI
) -> None:
    a, b = replicas
    peer = new_peer()
    for _ in range(CAP):
        upstream.enqueue(SLOW)
    async with AsyncExitStack() as stack:
        on_a = await stack.enter_async_context(a.client(peer=peer))
        on_b = await stack.enter_async_context(b.client(peer=peer))
        readers = []  # kept: a dropped reader closes its stream
        left: list[str] = []
        for _ in range(CAP):  # both of the IP's slots taken on replica A
            response = await stack.enter_async_context(on_a.stream("POST", "/api/v1/chat", json={"query": QUESTION}))
            assert response.status_code == 200
            left.append(response.headers["x-conversation-id"])
            readers.append(response.aiter_raw())
            await read_tokens(readers[-1], 1)
        refused = await on_b.post("/api/v1/chat", json={"query": QUESTION})
        assert_error(refused, 429, "too_many_streams")
        assert refused.headers["retry-after"] == "1"
    # Leaving released both slots (on A), so replica B serves the IP again.
    upstream.enqueue(Script(tokens=WORDS[:3]))
    async with b.client(peer=peer) as on_b:
        for _ in range(50):
            reply = await on_b.post("/api/v1/chat", json={"query": QUESTION})
            if reply.status_code != 429:
                break
            await asyncio.sleep(0.1)  # the client's hang-up reaches replica A a moment later
        assert reply.status_code == 200 and parse_sse(reply.content).done
        # The streams are resumable (Redis): the answers left behind go on unattended on A (their slots handed
        # over), until their visitor stops them, from any replica.
        for conversation_id in left:
            stop = await on_b.post(f"/api/v1/conversations/{conversation_id}/stop")
            assert stop.status_code == 200 and stop.json() == {"stopped": True}
    async with b.db() as sessions:
        for conversation_id in left:
            assert (await settled(sessions, conversation_id)).messages[-1].status == "stopped"
