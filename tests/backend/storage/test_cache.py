"""History cache: in-process LRU/TTL, and real Redis with its failures turned into misses (F2/F3)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from backend.settings import Settings
from backend.storage.cache import MemoryHistoryCache, RedisHistoryCache, build_history_cache, redis_client
from tests.backend.storage.services import DEAD_REDIS_URL, REDIS_URL, fallbacks, silent_server

HISTORY = [("user", "Hi 👋 שלום"), ("assistant", "Hello 你好")]


async def test_memory_cache_hit_miss_ttl_and_lru() -> None:
    cache = MemoryHistoryCache(ttl_seconds=0.2, max_entries=2)
    assert await cache.get("a") is None
    await cache.put("a", HISTORY)
    assert await cache.get("a") == HISTORY
    await cache.put("b", [])
    await cache.get("a")  # "a" is now the most recently used
    await cache.put("c", HISTORY)
    assert await cache.get("b") is None and await cache.get("a") == HISTORY
    await cache.invalidate("a")
    assert await cache.get("a") is None
    await asyncio.sleep(0.25)
    assert await cache.get("c") is None


def test_build_without_redis_is_in_memory() -> None:
    assert isinstance(build_history_cache(Settings(redis={"url": ""})), MemoryHistoryCache)


@pytest.fixture
async def redis_cache_and_prefix() -> AsyncIterator[tuple[RedisHistoryCache, str]]:
    """A cache on the real Redis under a key prefix unique to this test, removed afterwards."""
    prefix = f"lorechat-test-{uuid.uuid4().hex}:history:"
    settings = Settings(redis={"url": REDIS_URL, "timeout_seconds": 0.5}, cache={"history_ttl_seconds": 120})
    cache = build_history_cache(settings, key_prefix=prefix)
    assert isinstance(cache, RedisHistoryCache)
    try:
        yield cache, prefix
    finally:
        cleaner = redis_client(REDIS_URL, timeout_seconds=2)
        async for key in cleaner.scan_iter(match=prefix + "*"):
            await cleaner.delete(key)
        await cleaner.aclose()
        await cache.close()


@pytest.mark.services
async def test_redis_cache_round_trip_with_ttl(redis_cache_and_prefix: tuple[RedisHistoryCache, str]) -> None:
    redis_cache, prefix = redis_cache_and_prefix
    before = fallbacks("redis_cache")
    assert await redis_cache.get("conv") is None
    await redis_cache.put("conv", HISTORY)
    assert await redis_cache.get("conv") == HISTORY
    inspector = redis_client(REDIS_URL, timeout_seconds=2)
    try:
        key = prefix + "conv"
        assert 0 < await inspector.ttl(key) <= 120  # R4: no key without expiry
        await inspector.set(key, b"\xff not json")
        assert await redis_cache.get("conv") is None  # corrupt → miss, and dropped
        assert await inspector.exists(key) == 0
    finally:
        await inspector.aclose()
    await redis_cache.put("conv", HISTORY)
    await redis_cache.invalidate("conv")
    assert await redis_cache.get("conv") is None
    assert fallbacks("redis_cache") == before


async def test_redis_down_is_a_miss_and_counted() -> None:
    cache = RedisHistoryCache(redis_client(DEAD_REDIS_URL, timeout_seconds=0.1), ttl_seconds=60, timeout_seconds=0.1)
    before = fallbacks("redis_cache")
    try:
        await cache.put("conv", HISTORY)
        assert await cache.get("conv") is None
        await cache.invalidate("conv")
    finally:
        await cache.close()
    assert fallbacks("redis_cache") == before + 3


async def test_silent_redis_times_out_fast() -> None:
    """F2: a Redis that accepts and never answers costs ~timeout per call, then behaves as a miss."""
    async with silent_server() as url:
        cache = RedisHistoryCache(redis_client(url, timeout_seconds=0.1), ttl_seconds=60, timeout_seconds=0.1)
        before = fallbacks("redis_cache")
        try:
            started = time.monotonic()
            assert await cache.get("conv") is None
            await cache.put("conv", HISTORY)
            elapsed = time.monotonic() - started
        finally:
            await cache.close()
    assert elapsed < 1.0
    assert fallbacks("redis_cache") == before + 2
