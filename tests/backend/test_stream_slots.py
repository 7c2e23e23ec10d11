"""Per-IP stream slots (L4, R4): in one process, and shared by replicas through real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from backend.errors import ErrorCode, LorechatError
from backend.storage.cache import redis_client
from backend.stream_slots import SharedStreamSlots, StreamSlots
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.services


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    made = redis_client(REDIS_URL, timeout_seconds=0.5)
    yield made
    await made.aclose()


def replica(client: aioredis.Redis, *, ttl: float = 30.0) -> SharedStreamSlots:
    return SharedStreamSlots(client, 2, timeout_seconds=0.5, ttl_seconds=ttl)


def an_ip() -> str:
    return f"198.51.100.{uuid.uuid4().int % 250}-{uuid.uuid4().hex[:6]}"  # unique per test run


async def refused(slots: StreamSlots, ip: str) -> LorechatError:
    with pytest.raises(LorechatError) as caught:
        await slots.acquire(ip)
    return caught.value


async def test_in_process_slots_cap_each_ip() -> None:
    slots = StreamSlots(max_per_ip=2)
    first, second = await slots.acquire("a"), await slots.acquire("a")
    error = await refused(slots, "a")
    assert error.code is ErrorCode.too_many_streams and error.retry_after == 1
    await slots.acquire("b")
    await slots.release(first)
    assert slots.active("a") == 1 and slots.active() == 2
    await slots.release(second)
    assert slots.active("a") == 0


async def test_the_cap_holds_across_replicas(client: aioredis.Redis) -> None:
    a, b, ip = replica(client), replica(client), an_ip()
    held = [await a.acquire(ip), await b.acquire(ip)]
    assert (await refused(a, ip)).code is ErrorCode.too_many_streams
    assert (await refused(b, ip)).code is ErrorCode.too_many_streams
    await a.release(held[0])
    again = await b.acquire(ip)  # released on A, usable on B at once
    for slot in (held[1], again):
        await b.release(slot)
    assert await client.zcard(f"lorechat:slots:{ip}") == 0


async def test_fifty_concurrent_acquires_take_exactly_the_cap() -> None:
    # Atomicity, not latency: a cold pool opening 50 connections at once on a busy machine may take a while,
    # and a timed-out call would count in process (the documented fallback), not in Redis. The client's own
    # socket timeouts bound every call too, so this test's client gets the same generous limit as its slots.
    patient = redis_client(REDIS_URL, timeout_seconds=10.0)
    try:
        replicas, ip = [SharedStreamSlots(patient, 2, timeout_seconds=10.0) for _ in range(5)], an_ip()
        results = await asyncio.gather(*(replicas[i % 5].acquire(ip) for i in range(50)), return_exceptions=True)
        assert sum(not isinstance(result, BaseException) for result in results) == 2
        assert all(result.shared for result in results if not isinstance(result, BaseException))  # none in process
    finally:
        await patient.aclose()


async def test_a_dead_replicas_slots_expire_and_a_live_one_keeps_its_own(client: aioredis.Redis) -> None:
    ip_dead, ip_live = an_ip(), an_ip()
    dead, live = replica(client, ttl=1.0), replica(client, ttl=1.0)
    for _ in range(2):
        await dead.acquire(ip_dead)  # never released, never renewed: the replica was SIGKILLed
        await live.acquire(ip_live)
    renewer = asyncio.get_running_loop().create_task(live.run())
    try:
        await asyncio.sleep(1.6)
        survivor = replica(client)
        slot = await survivor.acquire(ip_dead)  # the dead replica's slots lapsed (R4: no permanent lockout)
        await survivor.release(slot)
        assert (await refused(survivor, ip_live)).code is ErrorCode.too_many_streams  # renewed: still held
        assert 0 < await client.pttl(f"lorechat:slots:{ip_live}") <= 1000  # every key expires (INV-4)
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer


async def test_redis_down_counts_slots_in_process() -> None:
    dead = redis_client("redis://127.0.0.1:1/0", timeout_seconds=0.2)
    try:
        slots = SharedStreamSlots(dead, 1, timeout_seconds=0.2)
        slot = await slots.acquire("a")
        assert not slot.shared and slots.active("a") == 1
        assert (await refused(slots, "a")).code is ErrorCode.too_many_streams  # the cap still holds locally
        await slots.release(slot)
        assert slots.active() == 0
    finally:
        await dead.aclose()


async def test_a_handed_over_slot_frees_the_cap_but_unattended_answers_are_capped_too(client: aioredis.Redis) -> None:
    slots = replica(client)
    ip = an_ip()
    held = [await slots.acquire(ip), await slots.acquire(ip)]
    assert (await refused(slots, ip)).code is ErrorCode.too_many_streams
    # Both visitors left resumable answers: their slots are free for the reconnects.
    assert [await slots.hand_over(slot) for slot in held] == [True, True]
    again = [await slots.acquire(ip), await slots.acquire(ip)]
    # Leaving those too would make four generations for one IP: the third one ends instead of going on.
    assert await slots.hand_over(again[0]) is False and slots.active(ip) == 2
    slots.unattended_ended(held[0])
    assert await slots.hand_over(again[0]) is True and slots.active(ip) == 1
    await slots.release(again[1])
    assert slots.active(ip) == 0
