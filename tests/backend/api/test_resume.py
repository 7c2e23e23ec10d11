"""Resumable streams (issue 14): with Redis, a visitor who leaves mid-answer does not end it (D2, "kept generating
for resumption"); `GET /api/v1/conversations/{id}/stream` with Last-Event-ID replays what was missed, byte for
byte with the same ids, then follows the turn live; the policy for everything else is a plain HTTP error."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from backend.stream.event_stream import KEEPALIVE
from backend.stream.stream_log import latest_key
from tests.backend.api.harness import Backend, LiveApp, extractive_tier, live_app, make_token, upstream_tier
from tests.backend.api.streams import Reply, assert_error, check_stream, parse_sse, read_tokens, settled
from tests.fakes import Script, ScriptedOpenAI

pytestmark = pytest.mark.services

QUESTION = "What does salt do to the crumb?"
WORDS = [f" word{i}" for i in range(60)]
ANSWER = "".join(WORDS)


def slow() -> Script:
    return Script(tokens=WORDS, token_interval=0.05)  # three seconds of answer


@pytest.fixture(scope="module")
def resumable(
    fake: ScriptedOpenAI, api_index: Path, api_pg_url: str, api_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApp]:
    with live_app(
        template=api_index,
        workdir=tmp_path_factory.mktemp("resumable"),
        backend=Backend("production", api_pg_url, api_redis_url),
        tiers=[upstream_tier(fake, idle=5), extractive_tier()],
    ) as app:
        yield app


async def leave_mid_answer(client: httpx.AsyncClient, *, tokens: int = 3, **body: object) -> tuple[str, bytes]:
    """Start a turn, read `tokens` tokens, then drop the connection; the conversation id and what was read."""
    async with client.stream("POST", "/api/v1/chat", json={"query": QUESTION, **body}) as response:
        assert response.status_code == 200
        conversation_id = response.headers["x-conversation-id"]
        raw = await read_tokens(response.aiter_raw(), tokens)
    return conversation_id, raw


async def resume(client: httpx.AsyncClient, conversation_id: str, last_event_id: int | str | None) -> Reply:
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    raw = b""
    async with client.stream("GET", f"/api/v1/conversations/{conversation_id}/stream", headers=headers) as response:
        async for chunk in response.aiter_raw():
            raw += chunk
    return Reply(response.status_code, response.headers, raw)


def complete_events(raw: bytes) -> bytes:
    """The frames a client had wholly read when it left (up to the last blank line)."""
    return raw[: raw.rindex(b"\n\n") + 2]


def events_only(raw: bytes) -> bytes:
    """The event frames without keepalive comments (each connection sends its own while the log is quiet)."""
    return raw.replace(KEEPALIVE, b"")


async def test_a_visitor_who_left_resumes_with_nothing_lost_or_repeated(
    resumable: LiveApp, upstream: ScriptedOpenAI
) -> None:
    upstream.enqueue(slow())
    async with resumable.client() as client:
        conversation_id, raw = await leave_mid_answer(client)
        seen = parse_sse(complete_events(raw))
        last = seen.events[-1].id
        resumed = await resume(client, conversation_id, last)
        assert resumed.status == 200 and resumed.headers["content-type"].startswith("text/event-stream")
        rest = parse_sse(resumed.raw, first_id=last + 1)  # ids go on from the last one read, none skipped
        assert rest.terminal.name == "done" and rest.done["finish_reason"] == "stop"
        assert seen.text + rest.text == ANSWER  # kept generating while nobody read (D2 with resumption)

        # After the end, a replay from the start comes at once and is the stream as first sent, byte for byte.
        whole = await resume(client, conversation_id, None)
        assert whole.raw == events_only(complete_events(raw) + resumed.raw)
        check_stream(whole.stream)
    async with resumable.db() as sessions:
        answer = (await settled(sessions, conversation_id)).messages[-1]
    assert (answer.status, answer.content) == ("done", ANSWER)


async def test_a_resume_follows_the_turn_live_until_it_ends(resumable: LiveApp, upstream: ScriptedOpenAI) -> None:
    upstream.enqueue(slow())
    async with resumable.client() as first, resumable.client() as second:
        async with first.stream("POST", "/api/v1/chat", json={"query": QUESTION}) as response:
            conversation_id = response.headers["x-conversation-id"]
            chunks = response.aiter_raw()
            original = await read_tokens(chunks, 2)
            # A second reader (another tab, another replica) joins from the start while the first still reads.
            joined = await resume(second, conversation_id, 0)
            async for chunk in chunks:
                original += chunk
    stream = joined.stream
    assert stream.text == ANSWER and stream.done["conversation_id"] == conversation_id
    assert events_only(joined.raw) == events_only(original)  # the same events, ids and bytes as the live reader's


async def test_stop_reaches_an_answer_nobody_reads(resumable: LiveApp, upstream: ScriptedOpenAI) -> None:
    upstream.enqueue(Script(tokens=[f" word{i}" for i in range(400)], token_interval=0.05))
    async with resumable.client() as client:
        conversation_id, _ = await leave_mid_answer(client)
        stop = await client.post(f"/api/v1/conversations/{conversation_id}/stop")
        assert stop.json() == {"stopped": True}
        assert upstream.wait_streams_closed(3)
        whole = (await resume(client, conversation_id, None)).stream
    assert whole.done["finish_reason"] == "stopped"
    async with resumable.db() as sessions:
        answer = (await settled(sessions, conversation_id)).messages[-1]
    assert (answer.status, answer.content) == ("stopped", whole.text)


async def test_the_resume_policy(resumable: LiveApp, upstream: ScriptedOpenAI, api_redis_url: str) -> None:
    upstream.enqueue(Script(tokens=[" Salt", " tightens", " gluten."]))
    owner_token = make_token("resume-owner")
    async with resumable.client(token=owner_token) as owner, resumable.client() as stranger:
        reply = await owner.post("/api/v1/chat", json={"query": QUESTION})
        conversation_id = reply.headers["x-conversation-id"]
        assert (await resume(owner, conversation_id, 0)).stream.text == " Salt tightens gluten."
        # Someone else's conversation, an unknown one, and a malformed one read as "not found" alike (S3).
        assert_error(await resume(stranger, conversation_id, 0), 404, "not_found")
        assert_error(await resume(stranger, "c" * 32, 0), 404, "not_found")
        assert_error(await resume(stranger, "x", 0), 404, "not_found")
        for bad in ("abc", "-1", "1.5", "1e3"):
            assert_error(await resume(owner, conversation_id, bad), 422, "invalid_input")
        # A stream no longer kept (expired) is "not found": the client reads the conversation instead.
        client = aioredis.Redis.from_url(api_redis_url)
        try:
            await client.delete(latest_key(conversation_id))
        finally:
            await client.aclose()
        assert_error(await resume(owner, conversation_id, 0), 404, "not_found")


async def test_d5_a_resume_at_or_past_the_end_answers_204_at_once(resumable: LiveApp, upstream: ScriptedOpenAI) -> None:
    upstream.enqueue(Script(tokens=[" Salt", " tightens", " gluten."]))
    async with resumable.client() as client:
        reply = await client.post("/api/v1/chat", json={"query": QUESTION})
        conversation_id = reply.headers["x-conversation-id"]
        done_id = parse_sse(reply.content).events[-1].id
        for last in (done_id, done_id + 1, 10**12):
            started = time.monotonic()
            ended = await resume(client, conversation_id, last)
            assert ended.status == 204 and ended.raw == b"", (last, ended.status, ended.raw[:200])
            assert time.monotonic() - started < 2  # no wait for events that will never come
        # One event before the end still gets that end, and nothing else.
        last_one = await resume(client, conversation_id, done_id - 1)
        assert last_one.status == 200
        tail = parse_sse(last_one.raw, first_id=done_id)
        assert [event.name for event in tail.events] == ["done"]
        assert tail.done["conversation_id"] == conversation_id


async def test_d5_a_resume_with_the_stream_log_unreachable_is_503_with_retry_after(
    fake: ScriptedOpenAI, api_index: Path, api_pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with socket.socket() as closed:  # a port nothing listens on: Redis "down" from the start
        closed.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{closed.getsockname()[1]}/0"
    with live_app(
        template=api_index,
        workdir=tmp_path_factory.mktemp("resume-redis-down"),
        backend=Backend("production", api_pg_url, dead),
        tiers=[extractive_tier()],
    ) as app:
        async with app.client() as client:
            reply = await client.post("/api/v1/chat", json={"query": QUESTION})
            assert reply.status_code == 200
            conversation_id = reply.headers["x-conversation-id"]
            down = await resume(client, conversation_id, 0)
    assert_error(down, 503, "stream_log_unavailable")
    assert int(down.headers["retry-after"]) >= 1


async def test_a_new_turn_is_what_the_conversation_resumes(resumable: LiveApp, upstream: ScriptedOpenAI) -> None:
    upstream.enqueue(Script(tokens=[" first"]))
    upstream.enqueue(Script(tokens=[" second"]))
    async with resumable.client() as client:
        first = await client.post("/api/v1/chat", json={"query": QUESTION})
        conversation_id = first.headers["x-conversation-id"]
        await client.post("/api/v1/chat", json={"query": "And sugar?", "conversation_id": conversation_id})
        assert (await resume(client, conversation_id, 0)).stream.text == " second"


@pytest.fixture(scope="module")
def embedded(fake: ScriptedOpenAI, api_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    with live_app(
        template=api_index,
        workdir=tmp_path_factory.mktemp("no-redis"),
        backend=Backend("embedded", "", ""),
        tiers=[upstream_tier(fake), extractive_tier()],
    ) as app:
        yield app


async def test_without_redis_nothing_is_kept_and_a_visitor_who_leaves_ends_the_turn(
    embedded: LiveApp, upstream: ScriptedOpenAI
) -> None:
    upstream.enqueue(slow())
    async with embedded.client() as client:
        conversation_id, _ = await leave_mid_answer(client)
        assert upstream.wait_streams_closed(2)  # D2 as before: the upstream is closed promptly
        assert_error(await resume(client, conversation_id, 0), 409, "resume_unavailable")
    async with embedded.db() as sessions:
        answer = (await settled(sessions, conversation_id)).messages[-1]
    assert answer.status == "interrupted"
