"""Resumable streams: every event of a turn kept, with its id, in a short-lived Redis stream.

Writing costs the token path one append to a shared buffer: each event is encoded there once (`EVENT_HEAD`, which
the native tap in chat/_token_pipe.c writes too, in C), and a process-wide flusher sends what all turns appended as
the one argument of one script call every `flush_seconds` (one round trip and one argument for hundreds of events:
an argument per event cost redis-py's encoder more CPU than relaying the token, and a round's fixed cost in redis-py
is ~0.2 ms, BENCHMARKS.md, "Resumable streams"). Event `n` of a turn
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
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from backend.errors import ErrorCode, LorechatError
from backend.metrics import DEPENDENCY_FALLBACKS
from backend.redis_health import RedisHealth
from backend.settings import Settings
from backend.storage.cache import redis_client
from backend.stream.events import ErrorEvent, frame

log = logging.getLogger(__name__)

EVENTS_PREFIX = "lorechat:events:"
LATEST_PREFIX = "lorechat:events-of:"
_ERRORS = (RedisError, OSError, TimeoutError)
_TERMINAL = b"1"
# One event in the write buffer: the key's length and the key, then `EVENT_HEAD` (the event id, the flag, the frame's
# length), then the frame; integers big-endian. The native tap writes the same bytes (_token_pipe.c `log_frame`).
KEY_LENGTH = struct.Struct(">H")
EVENT_HEAD = struct.Struct(">IBI")
PLAIN, EXPIRE, TERMINAL = 0, 1, 2  # the flag: EXPIRE (re)sets the key's expiry, TERMINAL also marks the entry t=1
# ARGV: ttl, the round's events as one string, then (conversation key, message id) pairs: the pointers, set first.
# Event n is the entry "0-n". pcall: one bad entry must not drop the rest. (Redis' Lua has the struct library.)
_APPEND = """
local ttl = tonumber(ARGV[1])
for i = 3, #ARGV, 2 do
  redis.pcall('SET', ARGV[i], ARGV[i + 1], 'EX', ttl)
end
local events = ARGV[2]
local at, size = 1, #events
while at <= size do
  local key_length, id, flag, frame_length
  key_length, at = struct.unpack('>H', events, at)
  local key = string.sub(events, at, at + key_length - 1)
  id, flag, frame_length, at = struct.unpack('>I4BI4', events, at + key_length)
  local frame = string.sub(events, at, at + frame_length - 1)
  at = at + frame_length
  if flag == 2 then
    redis.pcall('XADD', key, '0-' .. id, 'f', frame, 't', '1')
  else
    redis.pcall('XADD', key, '0-' .. id, 'f', frame)
  end
  if flag ~= 0 then
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

    __slots__ = ("_log", "head", "key", "refreshed")

    def __init__(self, log: StreamLog, key: str) -> None:
        self._log = log
        self.key = key
        encoded = key.encode()
        self.head = KEY_LENGTH.pack(len(encoded)) + encoded  # how each of its events starts in the write buffer
        self.refreshed = float("-inf")  # when an event last (re)set this key's expiry

    @property
    def available(self) -> bool:
        """Whether events appended now would be kept (Redis is not in its failure cool-down)."""
        return self._log.available

    def append(self, event_id: int, body: bytes, *, terminal: bool = False) -> None:
        self._log.append(self, event_id, body, terminal)

    def native(self) -> NativeLog:
        """What the native tap needs to append this turn's token frames itself (chat/native_relay.py)."""
        return self._log.native(self)

    async def close(self) -> None:
        """Wait (bounded) until everything appended is in Redis: the terminal event included."""
        await self._log.flushed()


# For the native tap: the shared write buffer, the turn's event head, the flusher's wake-up (called when the tap's
# event is the buffer's first), the last event id kept, and how often an event (re)sets the key's expiry.
NativeLog = tuple[bytearray, bytes, Callable[[], None], int, float]


def read_events(buffer: bytes) -> list[tuple[str, int, int, bytes]]:
    """The write buffer's events as (key, event id, flag, frame): for the log's warnings and for tests."""
    events = []
    at = 0
    while at < len(buffer):
        (key_length,) = KEY_LENGTH.unpack_from(buffer, at)
        at += KEY_LENGTH.size
        key = buffer[at : at + key_length].decode()
        event_id, flag, frame_length = EVENT_HEAD.unpack_from(buffer, at + key_length)
        at += key_length + EVENT_HEAD.size
        events.append((key, event_id, flag, bytes(buffer[at : at + frame_length])))
        at += frame_length
    return events


class StreamLog:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        reader: aioredis.Redis,
        ttl_seconds: int,
        max_events: int,
        timeout_seconds: float,
        flush_seconds: float = 0.025,
        health: RedisHealth | None = None,  # shared with the other Redis users of the process
    ) -> None:
        self._client = client  # short calls (the flusher's rounds), bounded by the Redis timeout
        self._reader = reader  # blocking reads of followers: a client whose reads may wait that long
        self._ttl = ttl_seconds
        self._refresh_seconds = ttl_seconds / 3  # an event (re)sets its key's expiry once this has passed
        self._max_events = max_events
        self._timeout = timeout_seconds
        self._flush_seconds = flush_seconds
        # Every event appended since the flusher's last round, encoded. One object for the process's life: native
        # taps hold it while they pipe, so a round copies and clears it rather than replacing it.
        self._events = bytearray()
        self._latest: list[tuple[str, str]] = []  # (conversation key, message id) to point at, before events
        self._wake = asyncio.Event()
        self._rounds_taken = 0  # rounds that took the buffer's events
        self._rounds_done = 0  # … and whose write ended (or failed)
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
        if event_id > self._max_events:
            return  # bounded: a replay past this point finds the gap and says so
        flag = PLAIN
        if terminal:
            flag = TERMINAL
        else:
            now = time.monotonic()
            if now - turn.refreshed > self._refresh_seconds:
                flag = EXPIRE
                turn.refreshed = now
        events = self._events
        if not events:
            self._wake.set()
        events += turn.head
        events += EVENT_HEAD.pack(event_id, flag, len(body))
        events += body

    def native(self, turn: TurnLog) -> NativeLog:
        return (self._events, turn.head, self._wake.set, self._max_events, self._refresh_seconds)

    async def flushed(self) -> None:
        """Until every event appended so far was written (or its write failed), at most one flush round and one
        Redis timeout: the end of a response waits for it, and a slow Redis must not hold the visitor."""
        if self._events:
            target = self._rounds_taken + 1  # the next round takes them
        elif self._rounds_done < self._rounds_taken:
            target = self._rounds_taken  # the round in flight has them
        else:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._flush_seconds + self._timeout):
                await asyncio.shield(future)

    def _take(self) -> tuple[list[tuple[str, str]], bytes]:
        """A round's work: the pointers to set and the events to add (the buffer is left empty)."""
        events = bytes(self._events)
        self._events.clear()
        latest, self._latest = self._latest, []
        self._rounds_taken += 1
        return latest, events

    async def run(self) -> None:
        """The flusher (a lifespan task): one script call per round for every turn's new events."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self._flush_seconds)  # let the other streams' tokens of this moment join in
            latest, events = self._take()
            try:
                if not self._health.available():
                    # Redis failed a moment ago (here or for another user of it): one timeout per cool-down in
                    # all (F2), so these events are dropped; a resume of their turn says it cannot replay.
                    DEPENDENCY_FALLBACKS.labels(dependency="redis_stream_log").inc()
                else:
                    await self._write(latest, events)
            except _ERRORS as exc:
                self._health.failed()
                DEPENDENCY_FALLBACKS.labels(dependency="redis_stream_log").inc()
                now = time.monotonic()
                if now - self._warned > 10:
                    self._warned = now
                    count = len(read_events(events))
                    log.warning("could not keep %d stream events for resumption (%s)", count, type(exc).__name__)
            except Exception:
                log.exception("the stream log's flusher failed a round")
            finally:
                self._rounds_done += 1
                self._release()

    async def _write(self, latest: list[tuple[str, str]], events: bytes) -> None:
        """One script call: the round's pointers, then all of its events, however many turns wrote, as one argument
        (redis-py loads the script again if Redis lost it)."""
        if not events and not latest:
            return
        args: list[str | int | bytes] = [self._ttl, events]
        for pointer in latest:
            args += pointer
        async with asyncio.timeout(self._timeout * 4):  # one round trip (two when the script must be loaded)
            await self._append_script(args=args)

    def _release(self) -> None:
        keep = []
        for target, future in self._waiters:
            if self._rounds_done >= target:
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

    async def end_id(self, message_id: str) -> int | None:
        """The id of the turn's terminal event (`done` or `error`) when the log holds it; None while the answer
        still streams, or when its end is not kept."""
        try:
            async with asyncio.timeout(self._timeout * 4):
                response: Any = await self._client.xrevrange(events_key(message_id), count=1)
        except _ERRORS as exc:
            self._health.failed()
            raise LorechatError(ErrorCode.stream_log_unavailable, "Stream resumption is unavailable right now") from exc
        for entry_id, fields in response or []:
            if fields.get(b"t") == _TERMINAL:
                raw = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                return int(raw.split("-", 1)[1])
        return None

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
        latest, events = self._take()
        with contextlib.suppress(*_ERRORS):
            await self._write(latest, events)
        self._rounds_done += 1
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
