"""Conversation history cache: in-process LRU, or Redis bounded by a timeout (SQL stays the truth, F3)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from backend.metrics import DEPENDENCY_FALLBACKS
from backend.redis_health import RedisHealth
from backend.settings import Settings

log = logging.getLogger(__name__)

History = list[tuple[str, str]]
T = TypeVar("T")

# A Redis outage would otherwise log on every request.
_LOG_EVERY_SECONDS = 60.0


class HistoryCache(Protocol):
    async def get(self, conversation_id: str) -> History | None: ...

    async def put(self, conversation_id: str, history: History) -> None: ...

    async def invalidate(self, conversation_id: str) -> None: ...

    async def close(self) -> None: ...


class MemoryHistoryCache:
    """LRU with a TTL, for one worker without Redis."""

    def __init__(self, *, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[float, History]] = OrderedDict()

    async def get(self, conversation_id: str) -> History | None:
        entry = self._entries.get(conversation_id)
        if entry is None:
            return None
        expires, history = entry
        if expires <= time.monotonic():
            del self._entries[conversation_id]
            return None
        self._entries.move_to_end(conversation_id)
        return list(history)

    async def put(self, conversation_id: str, history: History) -> None:
        self._entries[conversation_id] = (time.monotonic() + self._ttl, list(history))
        self._entries.move_to_end(conversation_id)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def invalidate(self, conversation_id: str) -> None:
        self._entries.pop(conversation_id, None)

    async def close(self) -> None:
        self._entries.clear()


class RedisHistoryCache:
    """Redis-backed; every call is bounded by `timeout_seconds`, and any failure is a miss (F2).

    After a failure Redis is skipped for `failure_cooldown_seconds`, so a hanging Redis costs one timeout
    per cooldown, not one per call. A write that failed (or was skipped) may have left an older entry
    behind, so entries written before this process's last missed write are misses too: SQL stays the
    truth when Redis comes back (F3).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        ttl_seconds: int,
        timeout_seconds: float,
        key_prefix: str = "lorechat:history:",
        failure_cooldown_seconds: float = 5.0,
        health: RedisHealth | None = None,  # shared with the other Redis users of the process
    ) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._timeout = timeout_seconds
        self._prefix = key_prefix
        self._health = health or RedisHealth(failure_cooldown_seconds)
        self._missed_write_at = 0.0  # wall clock, comparable with the `at` stored in entries
        self._last_warning = -_LOG_EVERY_SECONDS

    def _key(self, conversation_id: str) -> str:
        return self._prefix + conversation_id

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
        ok, value = False, None
        if self._health.available():
            try:
                async with asyncio.timeout(self._timeout):
                    ok, value = True, await call()
            except (RedisError, OSError, TimeoutError) as exc:
                self._health.failed()
                now = time.monotonic()
                if now - self._last_warning >= _LOG_EVERY_SECONDS:
                    self._last_warning = now
                    log.warning("redis history cache %s failed (%s); using SQL", operation, type(exc).__name__)
        if not ok:
            DEPENDENCY_FALLBACKS.labels(dependency="redis_cache").inc()
            if operation != "get":
                self._missed_write_at = time.time()
        return ok, value

    async def get(self, conversation_id: str) -> History | None:
        ok, raw = await self._call("get", lambda: self._client.get(self._key(conversation_id)))
        if not ok or raw is None:
            return None
        try:
            entry = json.loads(raw)
            written_at, history = float(entry["at"]), entry["history"]
            parsed = [(str(role), str(content)) for role, content in history]
        except (ValueError, TypeError, KeyError):
            # A corrupt entry is a miss, and is dropped so it cannot fail again.
            await self.invalidate(conversation_id)
            return None
        return parsed if written_at > self._missed_write_at else None

    async def put(self, conversation_id: str, history: History) -> None:
        payload = json.dumps({"at": time.time(), "history": [[role, content] for role, content in history]})
        # SET with EX: the key can never outlive its TTL (R4/INV-4).
        await self._call("put", lambda: self._client.set(self._key(conversation_id), payload, ex=self._ttl))

    async def invalidate(self, conversation_id: str) -> None:
        await self._call("invalidate", lambda: self._client.delete(self._key(conversation_id)))

    async def close(self) -> None:
        await self._client.aclose()


def redis_client(url: str, *, timeout_seconds: float, max_connections: int = 512) -> aioredis.Redis:
    """A redis.asyncio client whose connects and reads give up after the timeout.

    One client serves every Redis user of a process (history cache, rate limits, stream slots, stops), so its
    pool is large and blocking: a burst of turns waits (at most the timeout) for a connection instead of
    failing with "too many connections" and sending everyone to the fallbacks.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_seconds,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        health_check_interval=30,
    )
    return aioredis.Redis.from_pool(pool)  # owns the pool: closing the client closes its connections


def build_history_cache(
    settings: Settings, *, client: aioredis.Redis | None = None, **redis_options: Any
) -> HistoryCache:
    """Redis when settings.redis.url is set (on `client`, the process's shared one, when given), else an
    in-process LRU."""
    ttl = settings.cache.history_ttl_seconds
    if not settings.redis.url:
        return MemoryHistoryCache(ttl_seconds=ttl)
    client = client or redis_client(settings.redis.url, timeout_seconds=settings.redis.timeout_seconds)
    return RedisHistoryCache(client, ttl_seconds=ttl, timeout_seconds=settings.redis.timeout_seconds, **redis_options)
