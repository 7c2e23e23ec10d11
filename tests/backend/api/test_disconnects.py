"""Stream lifecycle on a real server (D1-D4): clients that leave, the stop endpoint, and concurrent turns."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from tests.backend.api.harness import LiveApp
from tests.backend.api.streams import (
    assert_error,
    assert_turn_stored,
    check_stream,
    parse_sse,
    post_chat,
    settled,
)
from tests.fakes import Script, ScriptedOpenAI

QUESTION = "What does salt do to the crumb?"
WORDS = [f" word{i}" for i in range(200)]
SLOW = Script(tokens=WORDS, token_interval=0.05)  # ten seconds of answer, unless someone stops it


async def test_d1_client_leaves_before_reading(main_app: LiveApp, upstream: ScriptedOpenAI, db) -> None:
    upstream.enqueue(Script(tokens=WORDS, first_token_delay=0.8, token_interval=0.05))
    disconnects = upstream.disconnects
    async with main_app.client() as client:
        async with client.stream("POST", "/api/v1/chat", json={"query": QUESTION}) as response:
            assert response.status_code == 200
            conversation_id = response.headers["x-conversation-id"]
        # Leaving the block without reading closes the connection.
    detail = await settled(db, conversation_id)
    user, answer = detail.messages
    assert (user.role, user.content, user.status) == ("user", QUESTION, "done")
    assert (answer.status, answer.content) == ("interrupted", "")
    assert upstream.wait_streams_closed(3)  # the upstream call was cancelled, or never made
    assert len(upstream.requests) <= 1 and upstream.disconnects - disconnects == len(upstream.requests)
    if not upstream.requests:
        upstream._scripts.clear()  # the server noticed before it called the upstream at all


async def test_d1_client_leaves_while_the_upstream_is_thinking(main_app: LiveApp, upstream: ScriptedOpenAI, db) -> None:
    upstream.enqueue(Script(tokens=WORDS, first_token_delay=0.8))
    disconnects = upstream.disconnects
    async with main_app.client() as client:
        async with client.stream("POST", "/api/v1/chat", json={"query": QUESTION}) as response:
            conversation_id = response.headers["x-conversation-id"]
            for _ in range(300):  # until the server has called the upstream, then leave
                if upstream.open_streams:
                    break
                await asyncio.sleep(0.01)
            assert upstream.open_streams == 1
        left = time.monotonic()
    assert upstream.wait_streams_closed(2) and time.monotonic() - left < 1
    assert upstream.disconnects == disconnects + 1 and len(upstream.requests) == 1
    answer = (await settled(db, conversation_id)).messages[-1]
    assert (answer.status, answer.content) == ("interrupted", "")


async def _read_until_tokens(chunks: AsyncIterator[bytes], count: int) -> bytes:
    """Reads from one iterator that the caller keeps (a dropped `aiter_raw()` is closed, and so is the socket)."""
    raw = b""
    while len(parse_sse(raw, complete=False).tokens) < count:
        raw += await anext(chunks)
    return raw


async def test_d2_client_leaves_mid_answer(main_app: LiveApp, upstream: ScriptedOpenAI, db) -> None:
    upstream.enqueue(SLOW)
    disconnects = upstream.disconnects
    async with main_app.client() as client:
        async with client.stream("POST", "/api/v1/chat", json={"query": QUESTION}) as response:
            conversation_id = response.headers["x-conversation-id"]
            seen = parse_sse(await _read_until_tokens(response.aiter_raw(), 3), complete=False).text
        left = time.monotonic()
    if main_app.settings.redis.url and main_app.settings.server.resume_seconds:
        # With Redis the stream is resumable (test_resume.py): the answer goes on without a reader, is stored
        # whole, and the upstream is closed normally at its end.
        answer = (await settled(db, conversation_id, within=30)).messages[-1]
        assert (answer.status, answer.content) == ("done", "".join(WORDS))
        assert upstream.wait_streams_closed(5) and upstream.disconnects == disconnects
        return
    assert upstream.wait_streams_closed(2)
    # Closed promptly, not run to the end.
    assert time.monotonic() - left < 2 and upstream.disconnects == disconnects + 1
    answer = (await settled(db, conversation_id)).messages[-1]
    assert answer.status == "interrupted"
    assert answer.content.startswith(seen) and "".join(WORDS).startswith(answer.content)
    assert len(answer.content) < len("".join(WORDS))


async def test_d3_stop_endpoint_ends_the_stream_cleanly(main_app: LiveApp, upstream: ScriptedOpenAI, db) -> None:
    upstream.enqueue(SLOW)
    async with main_app.client() as client:
        async with client.stream("POST", "/api/v1/chat", json={"query": QUESTION}) as response:
            conversation_id = response.headers["x-conversation-id"]
            chunks = response.aiter_raw()
            raw = await _read_until_tokens(chunks, 2)
            stop = await client.post(f"/api/v1/conversations/{conversation_id}/stop")
            assert stop.status_code == 200 and stop.json() == {"stopped": True}
            async for chunk in chunks:
                raw += chunk
        stream = parse_sse(raw)
        check_stream(stream)
        assert stream.done["finish_reason"] == "stopped" and 2 <= len(stream.tokens) < len(WORDS)
        assert upstream.wait_streams_closed(2)
        again = await client.post(f"/api/v1/conversations/{conversation_id}/stop")
        assert again.json() == {"stopped": False}  # nothing is generating any more
        missing = await client.post("/api/v1/conversations/no-such-conversation/stop")
        assert_error(missing, 404, "not_found")
    answer = (await settled(db, conversation_id)).messages[-1]
    assert answer.status == "stopped" and answer.content == stream.text  # INV-2


async def test_d4_concurrent_turns_in_one_conversation(main_app: LiveApp, upstream: ScriptedOpenAI, db) -> None:
    async with main_app.client() as client:
        first = await post_chat(client, {"query": QUESTION})
        await assert_turn_stored(db, first, question=QUESTION)
        conversation_id = first.conversation_id
        upstream.enqueue(Script(tokens=WORDS[:20], token_interval=0.05))
        questions = ["Tell me more about salt timing please.", "And what about the oven temperature then?"]
        replies = await asyncio.gather(
            *(post_chat(client, {"query": q, "conversation_id": conversation_id}) for q in questions)
        )
        statuses = sorted(reply.status for reply in replies)
        assert statuses == [200, 409], statuses
        won = next(i for i, reply in enumerate(replies) if reply.status == 200)
        refused = assert_error(replies[1 - won], 409, "conflict")
        assert refused["retryable"] is True and replies[1 - won].headers["retry-after"]
        await assert_turn_stored(db, replies[won], question=questions[won])

        third = await post_chat(client, {"query": "Last one about flour types?", "conversation_id": conversation_id})
        await assert_turn_stored(db, third, question="Last one about flour types?")
    messages = (await settled(db, conversation_id)).messages
    assert [m.role for m in messages] == ["user", "assistant"] * 3  # never interleaved
    asked = [QUESTION, questions[won], "Last one about flour types?"]
    assert [m.content for m in messages if m.role == "user"] == asked
    assert [m.seq for m in messages] == list(range(6))
