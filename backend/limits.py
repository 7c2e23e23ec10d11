"""Rate limits: moving windows per user (or IP) and per creator, in Redis or in memory (the client address is
resolved in backend/client_ip.py, stream slots are counted in backend/stream_slots.py)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time

import redis.asyncio as aioredis
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.util import WindowStats
from redis.exceptions import RedisError

from backend.errors import ErrorCode, LorechatError
from backend.metrics import DEPENDENCY_FALLBACKS, LIMITER_REJECTIONS
from backend.redis_health import RedisHealth
from backend.settings import Settings
from backend.storage.cache import redis_client

log = logging.getLogger(__name__)

_STORAGE_ERRORS = (StorageError, RedisError, OSError, TimeoutError)
_LOG_EVERY_SECONDS = 60.0


def _item(per_window: int, window_seconds: int) -> RateLimitItem | None:
    # 0 disables a limit (documented in config.yaml by the lead).
    return RateLimitItemPerSecond(per_window, window_seconds, namespace="lorechat") if per_window > 0 else None


def _retry_after(stats: WindowStats) -> int:
    return max(1, math.ceil(stats.reset_time - time.time()))


def _async_uri(url: str) -> str:
    """redis://, rediss:// or unix:// in settings → the scheme limits.aio wants (async+redis://...)."""
    if url.startswith("unix://"):
        return "async+redis+unix://" + url.removeprefix("unix://")
    return "async+" + url


class RateLimiter:
    """Per user (or per IP when anonymous) and per creator, each a moving window of one hour.

    Redis failures follow settings.limits.on_storage_error; after one, Redis is skipped for
    `failure_cooldown_seconds` so a dead Redis costs one timeout, not one per request (F1/F2).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        window_seconds: int = 3600,  # shorter only in tests (R2)
        key_prefix: str = "lorechat-limits",
        failure_cooldown_seconds: float = 5.0,
        health: RedisHealth | None = None,  # shared with the other Redis users of the process
        client: aioredis.Redis | None = None,  # the process's shared client (else one of its own)
    ) -> None:
        limits = settings.limits
        self._user = _item(limits.user_per_hour, window_seconds)
        self._ip = _item(limits.ip_per_hour, window_seconds)
        self._creator = _item(limits.creator_per_hour, window_seconds)
        self._policy = limits.on_storage_error
        self._timeout = settings.redis.timeout_seconds
        self._health = health or RedisHealth(failure_cooldown_seconds)
        self._last_warning = -_LOG_EVERY_SECONDS
        # Serves when Redis is absent (single worker) or failing open.
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._client: aioredis.Redis | None = None
        self._redis: MovingWindowRateLimiter | None = None
        if settings.redis.url:
            self._client = client or redis_client(settings.redis.url, timeout_seconds=self._timeout)
            storage = RedisStorage(
                _async_uri(settings.redis.url),
                implementation="redispy",
                key_prefix=key_prefix,
                wrap_exceptions=True,
                connection_pool=self._client.connection_pool,  # type: ignore[arg-type]  # passed on to redis-py
            )
            self._redis = MovingWindowRateLimiter(storage)

    async def check(self, *, user_id: str | None, client_ip: str, creator: str | None) -> None:
        """Count one request; raise rate_limited / creator_rate_limited / limiter_unavailable when refused.

        The caller's own limit is hit first, so a request refused for its creator still counts against the
        caller; the reverse would let one client spend a creator's whole budget with refused requests.
        """
        if user_id is not None:
            await self._hit(self._user, ("user", user_id), "user", ErrorCode.rate_limited, "Rate limit exceeded")
        else:
            ip_key = ("ip", ip_bucket(client_ip))
            await self._hit(self._ip, ip_key, "ip", ErrorCode.rate_limited, "Rate limit exceeded")
        if creator is not None:
            await self._hit(
                self._creator,
                ("creator", creator),
                "creator",
                ErrorCode.creator_rate_limited,
                "Creator rate limit exceeded",
            )

    async def _hit(
        self, item: RateLimitItem | None, ids: tuple[str, str], scope: str, code: ErrorCode, message: str
    ) -> None:
        if item is None:
            return
        allowed, retry_after = await self._consume(item, ids)
        if not allowed:
            LIMITER_REJECTIONS.labels(scope=scope).inc()
            raise LorechatError(code, message, retry_after=retry_after)

    async def _consume(self, item: RateLimitItem, ids: tuple[str, str]) -> tuple[bool, int]:
        if self._redis is not None:
            if self._health.available():
                try:
                    async with asyncio.timeout(self._timeout):
                        if await self._redis.hit(item, *ids):
                            return True, 0
                    async with asyncio.timeout(self._timeout):
                        return False, _retry_after(await self._redis.get_window_stats(item, *ids))
                except _STORAGE_ERRORS as exc:
                    self._redis_failed(exc)
            if self._policy == "fail_closed":
                wait = max(1, math.ceil(self._health.retry_in()))
                raise LorechatError(ErrorCode.limiter_unavailable, "Rate limiting is unavailable", retry_after=wait)
            DEPENDENCY_FALLBACKS.labels(dependency="redis_limiter").inc()
        if await self._memory.hit(item, *ids):
            return True, 0
        return False, _retry_after(await self._memory.get_window_stats(item, *ids))

    def _redis_failed(self, exc: BaseException) -> None:
        self._health.failed()
        now = time.monotonic()
        if now - self._last_warning >= _LOG_EVERY_SECONDS:
            self._last_warning = now
            log.warning(
                "redis rate limiter failed (%s); %s for %.0f s",
                type(exc).__name__,
                "serving from memory" if self._policy == "fail_open" else "refusing requests",
                self._health.cooldown_seconds,
            )

    async def healthy(self) -> bool:
        """False when the configured Redis does not answer PING within the timeout (for /readyz)."""
        if self._client is None:
            return True
        try:
            async with asyncio.timeout(self._timeout):
                return bool(await self._client.ping())
        except _STORAGE_ERRORS:
            return False

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def ip_bucket(address: str) -> str:
    """IPv6 clients are limited per /64: one host usually owns the whole prefix."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
