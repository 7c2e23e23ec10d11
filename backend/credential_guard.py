"""One limiter for every credential check (the admin token, dashboard sessions, JWTs): refuse before checking.

An address gets `limits.auth_failures` failed checks per moving window of `limits.auth_window_seconds`. Each
check first reserves one attempt in the window, atomically, and only then evaluates the credential; a check
that passes gives its reservation back, a failed one keeps it. Once the window is full every further check from
that address is refused with 429 and Retry-After *without being evaluated*, so the answer to a locked-out
caller never depends on whether its guess was right (the oracle of 429 vs 303), and fifty guesses sent at once
get exactly `auth_failures` evaluations (R1). Addresses are bucketed like the rate limits (IPv6 per /64).

With Redis the window is shared by every replica (a sorted set per address, one script call per check, times
from Redis's own clock); without it, or while Redis fails and `limits.on_storage_error` is fail_open, it is
kept in this process; fail_closed refuses with 503.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from backend.errors import ErrorCode, LorechatError
from backend.limits import ip_bucket
from backend.metrics import DEPENDENCY_FALLBACKS, LIMITER_REJECTIONS
from backend.redis_health import RedisHealth
from backend.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
_STORAGE_ERRORS = (RedisError, OSError, TimeoutError)
_MAX_MEMORY_KEYS = 100_000

# KEYS[1]: the address's window. ARGV: window ms, limit, member. Returns {1, 0} when reserved, else {0, ms to wait}.
_RESERVE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + window - now_ms}
end
redis.call('ZADD', KEYS[1], now_ms, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return {1, 0}
"""


class CredentialGuard:
    def __init__(
        self,
        settings: Settings,
        *,
        client: aioredis.Redis | None = None,
        health: RedisHealth | None = None,
        key_prefix: str = "lorechat-auth",
    ) -> None:
        limits = settings.limits
        self._limit = limits.auth_failures
        self._window = float(limits.auth_window_seconds)
        self._policy = limits.on_storage_error
        self._timeout = settings.redis.timeout_seconds
        self._client = client
        self._health = health or RedisHealth()
        self._prefix = key_prefix
        self._script = client.register_script(_RESERVE) if client is not None else None
        self._memory: dict[str, deque[tuple[float, str]]] = {}

    @property
    def enabled(self) -> bool:
        return self._limit > 0

    async def check(self, client_ip: str, verify: Callable[[], T]) -> T:
        """Reserve an attempt for `client_ip`, then run `verify`; a falsy result or a raised LorechatError
        (401/403) keeps the reservation as a failure, anything else gives it back. Raises 429 before `verify`
        runs when the address has no attempts left."""
        return await self.check_async(client_ip, lambda: _at_once(verify))

    async def check_async(self, client_ip: str, verify: Callable[[], Awaitable[T]]) -> T:
        """`check` for a credential whose check awaits (a site key, compared with its stored hash)."""
        if not self.enabled:
            return await verify()
        key = f"{self._prefix}:{ip_bucket(client_ip)}"
        member = secrets.token_hex(8)
        where = await self._reserve(key, member)
        try:
            result = await verify()
        except LorechatError as exc:
            if exc.code not in (ErrorCode.unauthorized, ErrorCode.forbidden):
                await self._release(where, key, member)
            raise
        except BaseException:
            await self._release(where, key, member)
            raise
        if result:
            await self._release(where, key, member)
        return result

    async def _reserve(self, key: str, member: str) -> str:
        """Where the reservation lives ("redis" or "memory"); raises 429 (or 503 fail_closed) when refused."""
        if self._script is not None:
            if self._health.available():
                try:
                    async with asyncio.timeout(self._timeout):
                        granted, wait_ms = await self._script(
                            keys=[key], args=[int(self._window * 1000), self._limit, member]
                        )
                except _STORAGE_ERRORS as exc:
                    self._redis_failed(exc)
                else:
                    if not int(granted):
                        self._refuse(max(1, math.ceil(int(wait_ms) / 1000)))
                    return "redis"
            if self._policy == "fail_closed":
                wait = max(1, math.ceil(self._health.retry_in()))
                raise LorechatError(ErrorCode.limiter_unavailable, "Rate limiting is unavailable", retry_after=wait)
            DEPENDENCY_FALLBACKS.labels(dependency="redis_auth_guard").inc()
        now = time.monotonic()
        window = self._memory.get(key)
        if window is None:
            if len(self._memory) >= _MAX_MEMORY_KEYS:
                self._forget_expired(now)
            window = self._memory[key] = deque()
        while window and window[0][0] <= now - self._window:
            window.popleft()
        if len(window) >= self._limit:
            self._refuse(max(1, math.ceil(window[0][0] + self._window - now)))
        window.append((now, member))
        return "memory"

    async def _release(self, where: str, key: str, member: str) -> None:
        if where == "memory":
            window = self._memory.get(key)
            if window is not None:
                for entry in window:
                    if entry[1] == member:
                        window.remove(entry)
                        break
            return
        assert self._client is not None
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.zrem(key, member)
        except _STORAGE_ERRORS as exc:  # the attempt stays counted until its window passes: safe side
            self._redis_failed(exc)

    def _forget_expired(self, now: float) -> None:
        for key in [k for k, w in self._memory.items() if not w or w[-1][0] <= now - self._window]:
            del self._memory[key]
        while len(self._memory) >= _MAX_MEMORY_KEYS:  # still full of live windows: drop the oldest-made
            del self._memory[next(iter(self._memory))]

    @staticmethod
    def _refuse(retry_after: int) -> None:
        LIMITER_REJECTIONS.labels(scope="auth").inc()
        raise LorechatError(
            ErrorCode.rate_limited, "Too many failed sign-in attempts; try again later", retry_after=retry_after
        )

    def _redis_failed(self, exc: BaseException) -> None:
        self._health.failed()
        log.warning("redis credential guard failed (%s); %s", type(exc).__name__, self._policy)


async def _at_once(verify: Callable[[], T]) -> T:
    return verify()
