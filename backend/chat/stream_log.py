"""Resumable streams: every event of a turn kept, with its id, in a short-lived Redis stream.

Writing costs the token path one list append: a process-wide flusher sends what all turns appended in one
pipeline every `flush_seconds` (one round trip for hundreds of events, not one per token). Event `n` of a turn
is the Redis stream entry `0-n` of `lorechat:events:<message id>`, holding the frame's exact bytes, so a replay
is byte-for-byte what the first reader got; `lorechat:events-of:<conversation id>` names the conversation's
latest turn. Both expire `ttl_seconds` after the last write and the log keeps at most `max_events` entries.

Reading (`follow`) replays the entries after a `Last-Event-ID`, then blocks on the stream for new ones until a
terminal event (`done` or `error`). Entries must be contiguous (1, 2, 3…): a gap (a flush that failed, a log
trimmed) ends the replay with an error instead of a silently different answer. When the turn's process died,
no terminal ever comes: the follower asks the database, and once the answer is no longer streaming (a peer
reaped it) it ends the replay with a retryable error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from backend.chat.events import ErrorEvent, frame
from backend.errors import ErrorCode, LorechatError
from backend.metrics import DEPENDENCY_FALLBACKS
from backend.redis_health import RedisHealth
from backend.settings import Settings
from backend.storage.cache import redis_client

log = logging.getLogger(__name__)

EVENTS_PREFIX = "lorechat:events:"
LATEST_PREFIX = "lorechat:events-of:"
_ERRORS = (RedisError, OSError, TimeoutError)
_TERMINAL = b"1"
_FLAG_PLAIN, _FLAG_EXPIRE, _FLAG_TERMINAL = "-", "e", "t"
# ARGV: ttl, then (key, event id, frame, flag) per event. Event n is the entry "0-n"; "t" marks the terminal
# event (field t=1) and, like "e", (re)sets the key's expiry. pcall: one bad entry must not drop the rest.
_APPEND = """
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV, 4 do
  local key, flag = ARGV[i], ARGV[i + 3]
  if flag == 't' then
    redis.pcall('XADD', key, '0-' .. ARGV[i + 1], 'f', ARGV[i + 2], 't', '1')
  else
    redis.pcall('XADD', key, '0-' .. ARGV[i + 1], 'f', ARGV[i + 2])
  end
  if flag ~= '-' then
    redis.pcall('EXPIRE', key, ttl)
  end
end
return 0
"""


def events_key(message_id: str) -> str:
    return EVENTS_PREFIX + message_id


def latest_key(conversation_id: str) -> str:
    return LATEST_PREFIX + conversation_id


class TurnLog:
    """One turn's side of the log: the sink appends each frame it writes (or would have written) here."""

    __slots__ = ("_log", "key", "refreshed")

    def __init__(self, log: StreamLog, key: str) -> None:
        self._log = log
        self.key = key
        self.refreshed = float("-inf")  # when the flusher last set this key's expiry

    @property
    def available(self) -> bool:
        """Whether events appended now would be kept (Redis is not in its failure cool-down)."""
        return self._log.available

    def append(self, event_id: int, body: bytes, *, terminal: bool = False) -> None:
        self._log.append(self, event_id, body, terminal)

    async def close(self) -> None:
        """Wait (bounded) until everything appended is in Redis: the terminal event included."""
        await self._log.flushed()


# One appended frame: (its turn, event id, frame bytes, terminal?). A tuple: built once per token.
_Entry = tuple[TurnLog, int, bytes, bool]


class StreamLog:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        reader: aioredis.Redis,
        ttl_seconds: int,
        max_events: int,
        timeout_seconds: float,
        flush_seconds: float = 0.01,
        health: RedisHealth | None = None,  # shared with the other Redis users of the process
    ) -> None:
        self._client = client  # short calls (the flusher's pipelines), bounded by the Redis timeout
        self._reader = reader  # blocking reads of followers: a client whose reads may wait that long
        self._ttl = ttl_seconds
        self._max_events = max_events
        self._timeout = timeout_seconds
        self._flush_seconds = flush_seconds
        self._pending: list[_Entry] = []
        self._latest: list[tuple[str, str]] = []  # (conversation key, message id) to point at, before events
        self._wake = asyncio.Event()
        self._appended = 0
        self._written = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._warned = 0.0
        self._health = health or RedisHealth()
        self._append_script = client.register_script(_APPEND)

    # ---- writing ---------------------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self._health.available()

    def open(self, conversation_id: str, message_id: str) -> TurnLog:
        """A new turn's log; from now on the conversation's resume endpoint follows this turn."""
        self._latest.append((latest_key(conversation_id), message_id))
        self._wake.set()
        return TurnLog(self, events_key(message_id))

    def append(self, turn: TurnLog, event_id: int, body: bytes, terminal: bool) -> None:
        self._pending.append((turn, event_id, body, terminal))
        self._appended += 1
        if not self._wake.is_set():
            self._wake.set()

    async def flushed(self) -> None:
        """Until every entry appended so far was written (or its write failed), at most one flush round and one
        Redis timeout: the end of a response waits for it, and a slow Redis must not hold the visitor."""
        target = self._appended
        if self._written >= target:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._flush_seconds + self._timeout):
                await asyncio.shield(future)

    async def run(self) -> None:
        """The flusher (a lifespan task): one pipeline per round for every turn's new events."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self._flush_seconds)  # let the other streams' tokens of this moment join in
            batch, self._pending = self._pending, []
            latest, self._latest = self._latest, []
            try:
                if not self._health.available():
                    # Redis failed a moment ago (here or for another user of it): one timeout per cool-down in
                    # all (F2), so these events are dropped; a resume of their turn says it cannot replay.
                    DEPENDENCY_FALLBACKS.labels(dependency="redis_stream_log").inc()
                else:
                    await self._write(latest, batch)
            except _ERRORS as exc:
                self._health.failed()
                DEPENDENCY_FALLBACKS.labels(dependency="redis_stream_log").inc()
                now = time.monotonic()
                if now - self._warned > 10:
                    self._warned = now
                    log.warning("could not keep %d stream events for resumption (%s)", len(batch), type(exc).__name__)
            except Exception:
                log.exception("the stream log's flusher failed a round")
            finally:
                self._written += len(batch)
                self._release()

    async def _write(self, latest: list[tuple[str, str]], batch: list[_Entry]) -> None:
        if not batch and not latest:
            return
        now = time.monotonic()
        async with self._client.pipeline(transaction=False) as pipe:  # reset however the round ends
            await self._round(pipe, latest, batch, now)

    async def _round(self, pipe: Any, latest: list[tuple[str, str]], batch: list[_Entry], now: float) -> None:
        refresh_after = self._ttl / 3
        for key, message_id in latest:
            pipe.set(key, message_id, ex=self._ttl)
        # All of a round's events go as the arguments of one script call: one command to encode and one reply to
        # parse, however many turns wrote (a command per event cost more CPU than relaying the token).
        args: list[str | int | bytes] = [self._ttl]
        limit = self._max_events
        for turn, event_id, body, terminal in batch:
            if event_id > limit:
                continue  # bounded: a replay past this point finds the gap and says so
            flag = _FLAG_PLAIN
            if terminal:
                flag = _FLAG_TERMINAL
                turn.refreshed = now
            elif now - turn.refreshed > refresh_after:
                flag = _FLAG_EXPIRE
                turn.refreshed = now
            args += (turn.key, event_id, body, flag)
        if len(args) > 1:
            await self._append_script(args=args, client=pipe)  # queued: the pipeline sends it (EVALSHA)
        async with asyncio.timeout(self._timeout * 4):  # one round trip
            await pipe.execute(raise_on_error=False)

    def _release(self) -> None:
        keep = []
        for target, future in self._waiters:
            if self._written >= target:
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((target, future))
        self._waiters = keep

    # ---- reading ---------------------------------------------------------------------------------------------
    async def latest(self, conversation_id: str) -> str | None:
        """The message id of the conversation's latest logged turn, None when nothing is kept."""
        if not self._health.available():
            raise LorechatError(ErrorCode.stream_log_unavailable, "Stream resumption is unavailable right now")
        try:
            async with asyncio.timeout(self._timeout * 4):
                value = await self._client.get(latest_key(conversation_id))
        except _ERRORS as exc:
            self._health.failed()
            raise LorechatError(ErrorCode.stream_log_unavailable, "Stream resumption is unavailable right now") from exc
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def follow(
        self,
        message_id: str,
        *,
        after: int,
        block_seconds: float,
        still_streaming: Callable[[], Awaitable[bool]],
        request_id: str,
    ) -> AsyncIterator[bytes | None]:
        """The turn's frames after event `after`, in order, then live until its terminal event. Yields None
        whenever `block_seconds` passed without an event (the caller sends a keepalive)."""
        key = events_key(message_id)
        last = after
        quiet_rounds = 0
        while True:
            try:
                entries = await self._read(key, last, block_seconds)
            except _ERRORS:
                yield _end_with(last + 1, "Stream resumption was interrupted; read the conversation.", request_id)
                return
            if not entries:
                # Nothing new for a while: a live turn sends at least its keepalive-sized silence, a dead one
                # never ends. Once the database says the answer is no longer streaming, look once more (the
                # terminal may be in flight), then give up with a retryable error.
                if not await still_streaming():
                    quiet_rounds += 1
                    if quiet_rounds >= 2:
                        yield _end_with(last + 1, "The answer was interrupted; please ask again.", request_id)
                        return
                yield None
                continue
            quiet_rounds = 0
            for event_id, fields in entries:
                if event_id != last + 1:
                    yield _end_with(
                        last + 1, "Part of this answer is no longer kept; read the conversation.", request_id
                    )
                    return
                last = event_id
                yield fields[b"f"]
                if fields.get(b"t") == _TERMINAL:
                    return

    async def _read(self, key: str, last: int, block_seconds: float) -> list[tuple[int, dict[bytes, bytes]]]:
        response: Any = await self._reader.xread({key: f"0-{last}"}, count=512, block=max(1, int(block_seconds * 1000)))
        entries: list[tuple[int, dict[bytes, bytes]]] = []
        for _stream, items in response or []:
            for entry_id, fields in items:
                raw = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                entries.append((int(raw.split("-", 1)[1]), fields))
        return entries

    async def aclose(self) -> None:
        """At shutdown, after the flusher stopped: write what is left, once, then close the readers' client."""
        batch, self._pending = self._pending, []
        latest, self._latest = self._latest, []
        with contextlib.suppress(*_ERRORS):
            await self._write(latest, batch)
        self._written += len(batch)
        self._release()
        with contextlib.suppress(*_ERRORS):
            await self._reader.aclose()


# How long a follower's blocking read may wait (the resume route asks for at most this).
MAX_BLOCK_SECONDS = 5.0


def build_stream_log(
    settings: Settings, client: aioredis.Redis | None, *, health: RedisHealth | None = None
) -> StreamLog | None:
    """The resumable-stream log on the process's Redis client; None without Redis or with resume_seconds 0."""
    server = settings.server
    if client is None or server.resume_seconds <= 0:
        return None
    # Followers block on their reads, so they get a client of their own whose reads may wait that long.
    reader = redis_client(settings.redis.url, timeout_seconds=MAX_BLOCK_SECONDS + 2.0, max_connections=256)
    return StreamLog(
        client,
        reader=reader,
        ttl_seconds=server.resume_seconds,
        max_events=server.resume_max_events,
        timeout_seconds=settings.redis.timeout_seconds,
        health=health,
    )


def _end_with(event_id: int, message: str, request_id: str) -> bytes:
    """The replay's own last event, when the turn's own terminal event will never be read."""
    error = ErrorEvent(
        code=ErrorCode.upstream_interrupted.value, message=message, retryable=True, request_id=request_id
    )
    return frame(error, event_id)
