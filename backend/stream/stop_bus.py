"""A stop reaches the replica that streams the turn: through Redis when configured, else in this process.

Each replica marks the conversations it streams (`lorechat:streaming:<id>`, renewed while the turn runs,
expiring on its own when the replica dies) and listens on one pub/sub channel. `POST …/stop` on any replica
stops a local turn directly; otherwise, when the mark says some replica streams it, it publishes the stop and
the holder cancels its generation (the stream ends with `done`, finish_reason "stopped", as locally: D3).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from backend.metrics import DEPENDENCY_FALLBACKS
from backend.stream.running import RunningTurns

log = logging.getLogger(__name__)

CHANNEL = "lorechat:stop"
MARK_PREFIX = "lorechat:streaming:"
MARK_TTL_SECONDS = 30
_ERRORS = (RedisError, OSError, TimeoutError)
# Renews every mark of the replica in one call (ARGV: ttl, then the keys): a SET a conversation cost ~0.15 ms of
# redis-py's CPU each, 0.15 s of the event loop every renewal at 1,000 streams.
_RENEW = """
for i = 2, #ARGV do
  redis.pcall('SET', ARGV[i], '1', 'EX', ARGV[1])
end
return 0
"""


class StopBus:
    def __init__(
        self,
        running: RunningTurns,
        *,
        client: aioredis.Redis | None = None,
        url: str = "",
        timeout_seconds: float,
        mark_ttl_seconds: int = MARK_TTL_SECONDS,
    ) -> None:
        self._running = running
        self._mark_ttl = mark_ttl_seconds
        self._client = client
        self._url = url  # the subscriber gets its own connection: it blocks on reads, the client must not
        self._timeout = timeout_seconds
        self._pending: set[asyncio.Task[None]] = set()
        self._renew = None
        if client is not None:
            self._renew = client.register_script(_RENEW)
            running.on_register = lambda cid: self._spawn(self._mark(cid))
            running.on_unregister = lambda cid: self._spawn(self._unmark(cid))

    async def stop(self, conversation_id: str, *, reason: str = "stopped") -> bool:
        """Stop the turn streaming in this conversation on whichever replica holds it; False if none does."""
        if self._running.stop(conversation_id, reason=reason):
            return True
        if self._client is None:
            return False
        try:
            async with asyncio.timeout(self._timeout):
                if not await self._client.exists(MARK_PREFIX + conversation_id):
                    return False
                message = json.dumps({"conversation_id": conversation_id, "reason": reason})
                return bool(await self._client.publish(CHANNEL, message))
        except _ERRORS as exc:
            DEPENDENCY_FALLBACKS.labels(dependency="redis_stop").inc()
            log.warning("could not pass a stop to other replicas (%s)", type(exc).__name__)
            return False

    async def run(self) -> None:
        """Listen for stops and renew this replica's marks, until cancelled (from the lifespan)."""
        if self._client is None:
            return
        renewer = asyncio.get_running_loop().create_task(self._renew_marks())
        try:
            backoff = 0.5
            while True:
                try:
                    await self._listen()
                except _ERRORS as exc:
                    log.warning("stop channel lost (%s); resubscribing in %.1f s", type(exc).__name__, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _listen(self) -> None:
        subscriber = aioredis.Redis.from_url(self._url, socket_connect_timeout=self._timeout, health_check_interval=30)
        pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CHANNEL)
            while True:
                message = await pubsub.get_message(timeout=5.0)
                if message is None or message.get("type") != "message":
                    continue
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    stop = json.loads(message["data"])
                    self._running.stop(str(stop["conversation_id"]), reason=str(stop.get("reason", "stopped")))
        finally:
            with contextlib.suppress(*_ERRORS):
                await pubsub.aclose()
                await subscriber.aclose()

    async def _renew_marks(self) -> None:
        assert self._renew is not None
        while True:
            await asyncio.sleep(self._mark_ttl / 3)
            keys = [MARK_PREFIX + conversation_id for conversation_id in self._running.conversations()]
            if not keys:
                continue
            with contextlib.suppress(*_ERRORS):
                async with asyncio.timeout(self._timeout * 4):  # one call, however many turns run
                    await self._renew(args=[self._mark_ttl, *keys])

    async def _mark(self, conversation_id: str) -> None:
        assert self._client is not None
        with contextlib.suppress(*_ERRORS):
            async with asyncio.timeout(self._timeout):
                await self._client.set(MARK_PREFIX + conversation_id, "1", ex=self._mark_ttl)

    async def _unmark(self, conversation_id: str) -> None:
        assert self._client is not None
        with contextlib.suppress(*_ERRORS):
            async with asyncio.timeout(self._timeout):
                await self._client.delete(MARK_PREFIX + conversation_id)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
