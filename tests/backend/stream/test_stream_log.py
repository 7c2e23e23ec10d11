"""The resumable-stream log on real Redis: what is appended is replayed in order with its bytes, a gap or a
turn that can no longer finish ends the replay with an error, and the log is bounded and expires."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from backend.errors import ErrorCode, LorechatError
from backend.redis_health import RedisHealth
from backend.storage.cache import redis_client
from backend.stream.events import token_frame
from backend.stream.stream_log import StreamLog, events_key, latest_key
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.services


@pytest.fixture
async def log() -> AsyncIterator[StreamLog]:
    client = redis_client(REDIS_URL, timeout_seconds=0.5)
    made = StreamLog(
        client, reader=redis_client(REDIS_URL, timeout_seconds=3), ttl_seconds=60, max_events=5, timeout_seconds=0.5
    )
    flusher = asyncio.get_running_loop().create_task(made.run())
    yield made
    flusher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await flusher
    await made.aclose()
    await client.aclose()


async def replay(log: StreamLog, message_id: str, after: int, *, streaming: bool = True) -> list[bytes | None]:
    async def still_streaming() -> bool:
        return streaming

    follow = log.follow(message_id, after=after, block_seconds=0.2, still_streaming=still_streaming, request_id="r")
    return [body async for body in follow]


def ids() -> tuple[str, str]:
    return f"c{uuid.uuid4().hex}", f"m{uuid.uuid4().hex}"


async def test_appended_frames_replay_in_order_byte_for_byte_and_expire(log: StreamLog) -> None:
    conversation, message = ids()
    turn = log.open(conversation, message)
    frames = [token_frame(f" w{n}", n) for n in (1, 2, 3)]
    for n, frame in enumerate(frames, start=1):
        turn.append(n, frame, terminal=n == 3)
    await turn.close()
    assert await log.latest(conversation) == message
    assert await replay(log, message, 0) == frames
    assert await replay(log, message, 2) == frames[2:]
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        assert 0 < await client.ttl(events_key(message)) <= 60
        assert 0 < await client.ttl(latest_key(conversation)) <= 60
    finally:
        await client.aclose()


async def test_many_turns_interleaved_over_several_rounds_each_replay_in_order(log: StreamLog) -> None:
    # One round's script call carries every turn's events in one buffer; events appended while a round is in flight
    # go in the next one, and each turn's close waits for the round holding its terminal event.
    turns = [(message, log.open(conversation, message)) for conversation, message in (ids() for _ in range(20))]
    for n in range(1, 6):
        for message, turn in turns:
            turn.append(n, token_frame(f" {message[-4:]}{n}", n), terminal=n == 5)
        await asyncio.sleep(0.015)  # rounds are 25 ms apart: some land mid-round
    await asyncio.gather(*(turn.close() for _, turn in turns))
    for message, _ in turns:
        assert await replay(log, message, 0) == [token_frame(f" {message[-4:]}{n}", n) for n in range(1, 6)]


async def test_a_long_answer_keeps_its_events_alive_while_it_lasts() -> None:
    client = redis_client(REDIS_URL, timeout_seconds=0.5)
    made = StreamLog(client, reader=client, ttl_seconds=3, max_events=50, timeout_seconds=0.5)
    flusher = asyncio.get_running_loop().create_task(made.run())
    try:
        _, message = ids()
        turn = made.open("c-long", message)
        turn.append(1, token_frame(" w1", 1))
        await turn.close()
        await asyncio.sleep(1.5)  # past a third of the lifetime: the next event sets the expiry again
        turn.append(2, token_frame(" w2", 2))
        await turn.close()
        assert await client.pttl(events_key(message)) > 2_500  # set anew, not left at the first event's ~1.5 s
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        await client.aclose()


async def test_a_gap_ends_the_replay_with_an_error_not_a_different_answer(log: StreamLog) -> None:
    _, message = ids()
    turn = log.open("c-gap", message)
    for n in (1, 2, 4):  # event 3 never reached Redis
        turn.append(n, token_frame(f" w{n}", n), terminal=n == 4)
    await turn.close()
    got = await replay(log, message, 0)
    assert got[:2] == [token_frame(" w1", 1), token_frame(" w2", 2)]
    assert len(got) == 3 and got[2] is not None
    assert got[2].startswith(b"id: 3\nevent: error\n") and b'"retryable":true' in got[2]


async def test_the_log_is_bounded_and_a_replay_past_the_bound_says_so(log: StreamLog) -> None:
    _, message = ids()
    turn = log.open("c-bound", message)
    for n in range(1, 9):  # max_events is 5
        turn.append(n, token_frame(f" w{n}", n), terminal=n == 8)
    await turn.close()
    got = await replay(log, message, 0, streaming=False)
    assert got[:5] == [token_frame(f" w{n}", n) for n in range(1, 6)]
    assert [body for body in got[5:] if body is not None][-1].startswith(b"id: 6\nevent: error\n")


async def test_a_turn_that_can_no_longer_finish_ends_the_replay(log: StreamLog) -> None:
    _, message = ids()
    turn = log.open("c-dead", message)
    turn.append(1, token_frame(" w1", 1))
    await turn.close()
    got = await replay(log, message, 0, streaming=False)  # the database says it is no longer streaming
    assert got[0] == token_frame(" w1", 1)
    assert got[-1] is not None and got[-1].startswith(b"id: 2\nevent: error\n")
    assert all(body is None for body in got[1:-1])  # quiet rounds (keepalives) until it gives up


async def test_after_a_redis_failure_the_log_skips_redis_for_the_cool_down() -> None:
    # F2: a silent Redis costs the process one timeout per cool-down, shared by every Redis user.
    health = RedisHealth(cooldown_seconds=60)
    client = redis_client(REDIS_URL, timeout_seconds=0.5)
    made = StreamLog(client, reader=client, ttl_seconds=60, max_events=5, timeout_seconds=0.5, health=health)
    flusher = asyncio.get_running_loop().create_task(made.run())
    try:
        health.failed()  # say the rate limiter's call just timed out
        conversation, message = ids()
        turn = made.open(conversation, message)
        assert not turn.available  # so a visitor who leaves now ends the answer instead of detaching
        turn.append(1, token_frame(" w1", 1), terminal=True)
        async with asyncio.timeout(0.3):
            await turn.close()  # not waiting on Redis
        assert not await client.exists(events_key(message), latest_key(conversation))
        with pytest.raises(LorechatError) as caught:
            await made.latest(conversation)
        assert caught.value.code is ErrorCode.stream_log_unavailable
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        await client.aclose()
