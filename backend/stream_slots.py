"""Concurrent streams per client IP (L4): counted in this process, or across every replica through Redis.

With `redis.url` set, a slot is a member of a per-IP sorted set scored by its expiry (Redis server time), taken
and counted atomically by one Lua script, so a cap of N holds however many replicas serve the IP. The process
renews the slots it holds every third of their lifetime; a replica that dies (SIGKILL: nothing runs to release
them) stops renewing, and its slots expire within `SLOT_TTL_SECONDS` instead of locking the visitor out (R4).
When Redis fails, slots are counted in this process for a few seconds (logged and counted in
`lorechat_dependency_fallbacks_total`), as the rate limiter does.

A slot is an open connection. A visitor who leaves a resumable answer (stream/stream_log.py) hands the slot over:
it is released for their reconnect while the answer goes on unattended, and each process lets an IP have at most
as many unattended answers as it may have streams, so leaving and asking again cannot pile up generations.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from backend.errors import ErrorCode, LorechatError
from backend.metrics import DEPENDENCY_FALLBACKS, LIMITER_REJECTIONS
from backend.redis_health import RedisHealth

log = logging.getLogger(__name__)

SLOT_TTL_SECONDS = 30.0
_PREFIX = "lorechat:slots:"
_COOLDOWN_SECONDS = 5.0

# KEYS[1] the IP's set; ARGV: max, ttl seconds, member. Expired slots go first, then count, then take.
_ACQUIRE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
local ttl_ms = math.floor(tonumber(ARGV[2]) * 1000)
redis.call('ZADD', KEYS[1], now_ms + ttl_ms, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl_ms)
return 1
"""
# KEYS: the sets; ARGV[1] ttl seconds, then one member per key. Only slots still present are renewed.
_RENEW = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl_ms = math.floor(tonumber(ARGV[1]) * 1000)
for i, key in ipairs(KEYS) do
  if redis.call('ZSCORE', key, ARGV[i + 1]) then
    redis.call('ZADD', key, now_ms + ttl_ms, ARGV[i + 1])
    redis.call('PEXPIRE', key, ttl_ms)
  end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Slot:
    ip: str
    token: str
    shared: bool  # held in Redis (else in this process)


class StreamSlots:
    """In this process only: the embedded default, and the fallback while Redis is unreachable."""

    def __init__(self, max_per_ip: int) -> None:
        self._max = max_per_ip
        self._open: dict[str, int] = {}
        self._unattended: dict[str, int] = {}  # per IP, answers generating after their visitor left

    async def acquire(self, ip: str) -> Slot:
        count = self._open.get(ip, 0)
        if count >= self._max:
            raise _too_many()
        self._open[ip] = count + 1
        return Slot(ip=ip, token="", shared=False)

    async def release(self, slot: Slot) -> None:
        count = self._open.get(slot.ip, 0) - 1
        if count > 0:
            self._open[slot.ip] = count
        else:
            self._open.pop(slot.ip, None)

    async def hand_over(self, slot: Slot) -> bool:
        """The slot's visitor left but its answer goes on: release the slot, unless the IP already has its cap of
        unattended answers in this process (False: the caller ends the answer and releases the slot itself)."""
        unattended = self._unattended.get(slot.ip, 0)
        if unattended >= self._max:
            return False
        self._unattended[slot.ip] = unattended + 1
        await self.release(slot)
        return True

    def unattended_ended(self, slot: Slot) -> None:
        """A handed-over answer ended."""
        count = self._unattended.get(slot.ip, 0) - 1
        if count > 0:
            self._unattended[slot.ip] = count
        else:
            self._unattended.pop(slot.ip, None)

    def active(self, ip: str | None = None) -> int:
        """Slots held by this process (all of them, or one IP's)."""
        return self._open.get(ip, 0) if ip is not None else sum(self._open.values())

    async def run(self) -> None:
        """Nothing to renew in process; the same lifespan call as the shared kind."""


class SharedStreamSlots(StreamSlots):
    """Shared by every replica through Redis; in-process while Redis fails."""

    def __init__(
        self,
        client: aioredis.Redis,
        max_per_ip: int,
        *,
        timeout_seconds: float,
        ttl_seconds: float = SLOT_TTL_SECONDS,
        health: RedisHealth | None = None,  # shared with the other Redis users of the process
    ) -> None:
        super().__init__(max_per_ip)
        self._client = client
        self._ttl = ttl_seconds
        self._timeout = timeout_seconds
        self._held: dict[str, Slot] = {}  # token → slot, renewed while held
        self._health = health or RedisHealth(_COOLDOWN_SECONDS)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)

    async def acquire(self, ip: str) -> Slot:
        if self._health.available():
            token = uuid.uuid4().hex
            try:
                async with asyncio.timeout(self._timeout):
                    taken = await self._acquire(keys=[_PREFIX + ip], args=[self._max, self._ttl, token])
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed("acquire", exc)
            else:
                if not taken:
                    raise _too_many()
                slot = Slot(ip=ip, token=token, shared=True)
                self._held[token] = slot
                return slot
        DEPENDENCY_FALLBACKS.labels(dependency="redis_slots").inc()
        return await super().acquire(ip)

    async def release(self, slot: Slot) -> None:
        if not slot.shared:
            await super().release(slot)
            return
        self._held.pop(slot.token, None)
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.zrem(_PREFIX + slot.ip, slot.token)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("release", exc)  # the slot expires by itself within its lifetime

    def active(self, ip: str | None = None) -> int:
        shared = sum(1 for slot in self._held.values() if ip is None or slot.ip == ip)
        return shared + super().active(ip)

    async def run(self) -> None:
        """Renew this process's slots every third of their lifetime, until cancelled (from the lifespan)."""
        while True:
            await asyncio.sleep(self._ttl / 3)
            held = list(self._held.values())
            if not held:
                continue
            keys = [_PREFIX + slot.ip for slot in held]
            try:
                async with asyncio.timeout(max(self._timeout, 1.0)):
                    await self._renew(keys=keys, args=[self._ttl, *(slot.token for slot in held)])
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed("renew", exc)

    def _failed(self, operation: str, exc: BaseException) -> None:
        self._health.failed()
        log.warning("redis stream slots %s failed (%s); counting in this process", operation, type(exc).__name__)


def _too_many() -> LorechatError:
    LIMITER_REJECTIONS.labels(scope="streams").inc()
    return LorechatError(ErrorCode.too_many_streams, "Too many open streams", retry_after=1)
