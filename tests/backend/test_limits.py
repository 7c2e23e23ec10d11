"""Rate limits against real Redis and memory (R1-R4, F1/F2), client addresses (S1)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from starlette.datastructures import Headers

from backend.client_ip import client_ip
from backend.errors import ErrorCode, LorechatError
from backend.limits import RateLimiter
from backend.settings import Settings
from backend.storage.cache import redis_client
from tests.backend.storage.services import DEAD_REDIS_URL, REDIS_URL, fallbacks, rejections, silent_server

MakeLimiter = Callable[..., RateLimiter]


def _settings(redis_url: str, *, timeout: float = 0.5, **limits: Any) -> Settings:
    return Settings(redis={"url": redis_url, "timeout_seconds": timeout}, limits=limits)


@pytest.fixture
async def key_prefix() -> AsyncIterator[str]:
    """A Redis key prefix unique to this test; whatever it left in the real Redis is removed afterwards."""
    prefix = f"lorechat-test-{uuid.uuid4().hex}"
    yield prefix
    cleaner = redis_client(REDIS_URL, timeout_seconds=2)
    try:
        async for key in cleaner.scan_iter(match=prefix + "*"):
            await cleaner.delete(key)
    finally:
        await cleaner.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.services)])
async def make_limiter(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[MakeLimiter]:
    """Builds limiters on memory:// or on the real Redis, closed afterwards."""
    built: list[RateLimiter] = []
    redis_url = REDIS_URL if request.param == "redis" else ""

    def make(window_seconds: int = 3600, timeout: float = 0.5, **limits: Any) -> RateLimiter:
        settings = _settings(redis_url, timeout=timeout, **limits)
        limiter = RateLimiter(settings, window_seconds=window_seconds, key_prefix=key_prefix)
        built.append(limiter)
        return limiter

    try:
        yield make
    finally:
        for limiter in built:
            await limiter.close()


async def _outcomes(limiter: RateLimiter, n: int, **who: Any) -> list[LorechatError | None]:
    async def one() -> LorechatError | None:
        try:
            await limiter.check(**who)
        except LorechatError as exc:
            return exc
        return None

    return await asyncio.gather(*(one() for _ in range(n)))


async def test_concurrent_hits_are_atomic(make_limiter: MakeLimiter) -> None:
    """R1: 50 at once against a limit of 10 → exactly 10 pass; R3: refusals carry retry_after."""
    # Atomicity, not latency: 50 calls queue for the Redis pool, and on a loaded machine the last ones may take
    # longer than the 0.5 s the other tests use (a timeout serves from memory: a different test, F-rows).
    limiter = make_limiter(ip_per_hour=10, timeout=5.0)
    before = rejections("ip")
    results = await _outcomes(limiter, 50, user_id=None, client_ip="203.0.113.7", creator=None)
    refused = [r for r in results if r is not None]
    assert results.count(None) == 10 and len(refused) == 40
    for error in refused:
        assert error.code is ErrorCode.rate_limited and error.status == 429
        assert error.message == "Rate limit exceeded"
        assert error.retry_after is not None and 1 <= error.retry_after <= 3600
        assert error.body()["retry_after"] == error.retry_after
    assert rejections("ip") == before + 40
    # Another client is untouched.
    await limiter.check(user_id=None, client_ip="203.0.113.8", creator=None)


async def test_moving_window_blocks_a_burst_across_a_boundary(make_limiter: MakeLimiter) -> None:
    """R2: a fixed 2 s window would reset at the boundary and let a second full burst through."""
    limiter = make_limiter(window_seconds=2, ip_per_hour=5)
    who = {"user_id": None, "client_ip": "198.51.100.1", "creator": None}
    await asyncio.sleep((1.6 - time.time() % 2) % 2)  # 0.4 s before a fixed-window boundary
    assert (await _outcomes(limiter, 5, **who)).count(None) == 5
    await asyncio.sleep(0.6)  # now past the fixed boundary, inside the moving window
    second = await _outcomes(limiter, 5, **who)
    assert second.count(None) == 0
    assert all(e is not None and e.retry_after is not None and 1 <= e.retry_after <= 2 for e in second)
    await asyncio.sleep(1.6)  # the first burst has left the window
    assert (await _outcomes(limiter, 5, **who)).count(None) == 5


async def test_users_ips_and_creators_are_limited_separately(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(user_per_hour=3, ip_per_hour=1, creator_per_hour=4)
    ip = "192.0.2.10"
    # Authenticated: keyed on the user, not on the (shared) address.
    for _ in range(3):
        await limiter.check(user_id="alice", client_ip=ip, creator="c1")
    with pytest.raises(LorechatError) as caught:
        await limiter.check(user_id="alice", client_ip=ip, creator="c1")
    assert caught.value.code is ErrorCode.rate_limited
    await limiter.check(user_id=None, client_ip=ip, creator="c1")  # anonymous budget is separate; creator 4/4
    with pytest.raises(LorechatError) as caught:
        await limiter.check(user_id="bob", client_ip="192.0.2.11", creator="c1")
    assert caught.value.code is ErrorCode.creator_rate_limited
    assert caught.value.message == "Creator rate limit exceeded" and caught.value.retry_after
    await limiter.check(user_id="bob", client_ip="192.0.2.11", creator="c2")
    await limiter.check(user_id="bob", client_ip="192.0.2.11", creator=None)


async def test_ipv6_clients_share_their_64(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(ip_per_hour=2)
    await limiter.check(user_id=None, client_ip="2001:db8:1:2::1", creator=None)
    await limiter.check(user_id=None, client_ip="2001:db8:1:2:ffff::9", creator=None)
    with pytest.raises(LorechatError):
        await limiter.check(user_id=None, client_ip="2001:db8:1:2::abcd", creator=None)
    await limiter.check(user_id=None, client_ip="2001:db8:1:3::1", creator=None)


async def test_zero_disables_a_limit(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(ip_per_hour=0, creator_per_hour=0)
    results = await _outcomes(limiter, 30, user_id=None, client_ip="192.0.2.1", creator="c")
    assert results.count(None) == 30


@pytest.mark.services
async def test_every_redis_key_expires(key_prefix: str) -> None:
    """R4: no limiter key without a TTL, so a crash can never lock anyone out for good."""
    settings = _settings(REDIS_URL, user_per_hour=5, ip_per_hour=5, creator_per_hour=5)
    limiter = RateLimiter(settings, window_seconds=120, key_prefix=key_prefix)
    inspector = redis_client(REDIS_URL, timeout_seconds=2)
    try:
        await limiter.check(user_id="u1", client_ip="192.0.2.1", creator="c1")
        await limiter.check(user_id=None, client_ip="192.0.2.2", creator="c2")
        keys = [key async for key in inspector.scan_iter(match=key_prefix + "*")]
        assert len(keys) == 4
        for key in keys:
            assert 0 < await inspector.ttl(key) <= 120
        assert await limiter.healthy()
    finally:
        await inspector.aclose()
        await limiter.close()


async def test_redis_down_fails_open_to_memory() -> None:
    """F1: refused connection → the in-process limiter serves, still enforcing limits; never a 500."""
    limiter = RateLimiter(_settings(DEAD_REDIS_URL, timeout=0.1, ip_per_hour=3, on_storage_error="fail_open"))
    before = fallbacks("redis_limiter")
    try:
        results = await _outcomes(limiter, 5, user_id=None, client_ip="192.0.2.1", creator=None)
        assert results.count(None) == 3
        assert all(e is None or e.code is ErrorCode.rate_limited for e in results)
        assert fallbacks("redis_limiter") == before + 5
        assert not await limiter.healthy()
    finally:
        await limiter.close()


async def test_redis_down_fails_closed_with_retry_after() -> None:
    limiter = RateLimiter(_settings(DEAD_REDIS_URL, timeout=0.1, on_storage_error="fail_closed"))
    try:
        for _ in range(2):  # the second refusal comes from the cool-down, without touching Redis
            with pytest.raises(LorechatError) as caught:
                await limiter.check(user_id="u", client_ip="192.0.2.1", creator="c")
            assert caught.value.code is ErrorCode.limiter_unavailable and caught.value.status == 503
            assert caught.value.retry_after is not None and caught.value.retry_after >= 1
    finally:
        await limiter.close()


async def test_silent_redis_costs_one_timeout_then_memory() -> None:
    """F2: a hanging Redis is abandoned after ~timeout; later calls skip it during the cool-down."""
    async with silent_server() as url:
        limiter = RateLimiter(_settings(url, timeout=0.1, user_per_hour=10), failure_cooldown_seconds=30)
        try:
            started = time.monotonic()
            await limiter.check(user_id="u", client_ip="192.0.2.1", creator="c")
            first = time.monotonic() - started
            started = time.monotonic()
            for _ in range(5):
                await limiter.check(user_id="u", client_ip="192.0.2.1", creator="c")
            rest = time.monotonic() - started
            started = time.monotonic()
            assert not await limiter.healthy()
            assert time.monotonic() - started < 0.5
        finally:
            await limiter.close()
    assert first < 0.6 and rest < 0.1


def test_client_ip_honours_forwarding_only_from_trusted_proxies() -> None:
    """S1: spoofed X-Forwarded-For / X-Real-IP from an untrusted peer are ignored."""
    trusted = ["10.0.0.0/8", "192.0.2.1"]
    spoof = {"X-Forwarded-For": "1.2.3.4", "X-Real-IP": "5.6.7.8"}
    assert client_ip("203.0.113.5", spoof, trusted) == "203.0.113.5"
    assert client_ip("203.0.113.5", spoof, []) == "203.0.113.5"
    # Right-most untrusted hop: the client cannot push its own fake entry past the proxies.
    chain = {"x-forwarded-for": "1.2.3.4, 198.51.100.9, 10.1.1.1"}
    assert client_ip("10.0.0.2", chain, trusted) == "198.51.100.9"
    assert client_ip("192.0.2.1", {"X-Forwarded-For": "10.0.0.5, 10.0.0.6"}, trusted) == "10.0.0.5"
    assert client_ip("10.0.0.2", {"X-Forwarded-For": "garbage, 10.0.0.7"}, trusted) == "10.0.0.7"
    assert client_ip("10.0.0.2", {"X-Forwarded-For": "198.51.100.4:5555"}, trusted) == "198.51.100.4"
    assert client_ip("10.0.0.2", {"X-Real-IP": "198.51.100.3"}, trusted) == "198.51.100.3"
    assert client_ip("10.0.0.2", {"X-Real-IP": "nope"}, trusted) == "10.0.0.2"
    assert client_ip("10.0.0.2", {}, trusted) == "10.0.0.2"
    assert client_ip("::ffff:203.0.113.9", {}, trusted) == "203.0.113.9"
    assert client_ip(None, {}, trusted) == "unknown"
    # A second X-Forwarded-For line (appended by the proxy) is not hidden behind the client's own.
    repeated = Headers(raw=[(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"198.51.100.2")])
    assert client_ip("10.0.0.2", repeated, trusted) == "198.51.100.2"
