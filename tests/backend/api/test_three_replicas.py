"""Scale-out proof with real processes: three `lorechat serve` replicas on one PostgreSQL and one Redis, each on
its own copy of the same Edge index (no Qdrant server installs here). A stop sent to one replica ends the
stream another one serves, the per-IP stream cap holds across all three, and a visitor cut off on one replica
resumes on another with no event lost or repeated (issue 14; D2, D3, L4)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path

import httpx
import pytest

from tests.backend.api.harness import new_peer
from tests.backend.api.streams import assert_error, parse_sse, read_tokens
from tests.backend.api.test_crash import QUESTION, Served, serve
from tests.data_dirs import copy_data_dir
from tests.fakes import Script, ScriptedOpenAI

pytestmark = pytest.mark.services

CAP = 2
SLOW = [f" word{i}" for i in range(200)]


def client(served: Served, peer: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=peer)
    return httpx.AsyncClient(base_url=served.base_url, transport=transport, timeout=30)


async def test_three_replicas_share_stops_and_stream_slots(
    api_index: Path, upstream: ScriptedOpenAI, tmp_path: Path, api_pg_url: str, api_redis_url: str
) -> None:
    env = {"LORECHAT_REDIS__URL": api_redis_url, "LORECHAT_LIMITS__CONCURRENT_STREAMS_PER_IP": str(CAP)}
    log = tmp_path / "serve.log"
    with ExitStack() as processes:
        a, b, c = (
            processes.enter_context(
                serve(
                    data_dir=copy_data_dir(api_index, tmp_path / name),
                    database_url=api_pg_url,
                    fake=upstream,
                    log=log,
                    env_extra=env,
                )
            )
            for name in ("a", "b", "c")
        )
        await asyncio.gather(a.wait_ready(), b.wait_ready(), c.wait_ready())

        # A stop sent to B ends the stream A serves, cleanly (done, finish_reason "stopped").
        upstream.enqueue(Script(tokens=SLOW, token_interval=0.05))
        peer = new_peer()
        async with client(a, peer) as on_a, client(b, peer) as on_b:
            async with on_a.stream("POST", "/api/v1/chat", json={"query": QUESTION}) as response:
                conversation_id = response.headers["x-conversation-id"]
                chunks = response.aiter_raw()
                raw = await read_tokens(chunks, 2)
                stop = await on_b.post(f"/api/v1/conversations/{conversation_id}/stop")
                assert stop.json() == {"stopped": True}
                async for chunk in chunks:
                    raw += chunk
            stream = parse_sse(raw)
            assert stream.done["finish_reason"] == "stopped" and len(stream.tokens) < len(SLOW)
        assert upstream.wait_streams_closed(5)

        # The IP's two slots taken on A: C refuses a third stream from it before anything starts (429).
        peer = new_peer()
        for _ in range(CAP):
            upstream.enqueue(Script(tokens=SLOW, token_interval=0.05))
        async with AsyncExitStack() as open_streams:
            on_a = await open_streams.enter_async_context(client(a, peer))
            readers = []  # kept: a dropped reader closes its stream
            left = []
            for _ in range(CAP):
                response = await open_streams.enter_async_context(
                    on_a.stream("POST", "/api/v1/chat", json={"query": QUESTION})
                )
                assert response.status_code == 200
                left.append(response.headers["x-conversation-id"])
                readers.append(response.aiter_raw())
                await read_tokens(readers[-1], 1)
            async with client(c, peer) as on_c:
                refused = await on_c.post("/api/v1/chat", json={"query": QUESTION})
            assert_error(refused, 429, "too_many_streams")
        # Left, the answers go on unattended for a resume (their slots handed over), until stopped from anywhere.
        async with client(b, peer) as on_b:
            for conversation_id in left:
                assert (await on_b.post(f"/api/v1/conversations/{conversation_id}/stop")).json() == {"stopped": True}
        assert upstream.wait_streams_closed(5)

        # Cut off mid-answer on A, the visitor resumes on C: the events after the last one read, in order, with
        # the same ids, then live to `done`; the stored answer is exactly what the two connections carried.
        answer = [f" part{i}" for i in range(60)]
        upstream.enqueue(Script(tokens=answer, token_interval=0.05))
        peer = new_peer()
        async with client(a, peer) as on_a:
            async with on_a.stream("POST", "/api/v1/chat", json={"query": QUESTION}) as response:
                conversation_id = response.headers["x-conversation-id"]
                raw = await read_tokens(response.aiter_raw(), 3)
        seen = parse_sse(raw[: raw.rindex(b"\n\n") + 2])
        last = seen.events[-1].id
        async with client(c, peer) as on_c:
            path = f"/api/v1/conversations/{conversation_id}/stream"
            async with on_c.stream("GET", path, headers={"Last-Event-ID": str(last)}) as resumed:
                assert resumed.status_code == 200
                rest_raw = b"".join([chunk async for chunk in resumed.aiter_raw()])
            rest = parse_sse(rest_raw, first_id=last + 1)
            assert rest.done["finish_reason"] == "stop" and seen.text + rest.text == "".join(answer)
            stored = (await on_c.get(f"/api/v1/conversations/{conversation_id}")).json()["messages"][-1]
        assert (stored["status"], stored["content"]) == ("done", seen.text + rest.text)
