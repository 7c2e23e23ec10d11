"""Rate limits (moving window, Redis or memory) and the client address behind proxies (stream slots:
backend/stream_slots.py)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

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
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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
            ip_key = ("ip", _ip_bucket(client_ip))
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


def _ip_bucket(address: str) -> str:
    """IPv6 clients are limited per /64: one host usually owns the whole prefix."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@lru_cache(maxsize=32)
def _networks(trusted: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in trusted if entry.strip())


def _parse_ip(value: str | None) -> IPAddress | None:
    if not value:
        return None
    value = value.strip()
    if value.startswith("["):  # [v6]:port
        value = value[1 : value.find("]")] if "]" in value else value
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return mapped or ip


def _header(headers: Mapping[str, str], name: str) -> str | None:
    getlist: Any = getattr(headers, "getlist", None)
    if getlist is not None:  # Starlette: a repeated header must not hide the proxy's own hop
        values = getlist(name)
        return ",".join(values) if values else None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def client_ip(peer: str | None, headers: Mapping[str, str], trusted_proxies: Sequence[str]) -> str:
    """The address to key limits on (S1): forwarding headers count only when the peer is a trusted proxy.

    X-Forwarded-For is read right to left, skipping trusted proxies; the first untrusted hop is the client.
    """
    peer_ip = _parse_ip(peer)
    if peer_ip is None:
        return peer or "unknown"
    networks = _networks(tuple(trusted_proxies))

    def trusted(ip: IPAddress) -> bool:
        return any(ip in network for network in networks)

    if not trusted(peer_ip):
        return str(peer_ip)
    forwarded = _header(headers, "x-forwarded-for")
    if forwarded:
        nearest = peer_ip
        for hop in reversed(forwarded.split(",")):
            ip = _parse_ip(hop)
            if ip is None:  # garbage: stop at the last address a trusted proxy vouched for
                return str(nearest)
            if not trusted(ip):
                return str(ip)
            nearest = ip
        return str(nearest)
    real = _parse_ip(_header(headers, "x-real-ip"))
    return str(real or peer_ip)
