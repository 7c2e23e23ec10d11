"""The chat turn's HTTP response: server-sent events written straight to the ASGI `send`.

Per token it costs one frame (precomputed bytes + orjson) and one `send`: no generator between the service and
the socket, no cancel scope or timer per event, no lock. Per stream it keeps one small task that watches the
client (disconnect) and sends a keepalive comment when the stream has been quiet for `keepalive_seconds`. The
send and idle deadlines are the process watchdog's (running.py), which reads the turn's clocks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, cast

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from backend.stream.events import DoneEvent, ErrorEvent, SourcesEvent, frame, token_frame
from backend.stream.running import DISCONNECTED, SEND_TIMEOUT, TurnControl
from backend.stream.stream_log import NativeLog, TurnLog

log = logging.getLogger(__name__)

KEEPALIVE = b": keepalive\n\n"
# Scope key: the `send` RequestContext (api/middleware.py) was given, for a long response's body messages. Every
# middleware below RequestContext (BodySizeLimit, CORS, Starlette's exception layers) only reads or amends the
# `http.response.start` message and passes body messages on unchanged, so once the start has gone down the
# whole chain a stream may skip those wrappers: four Python calls less per token. A middleware that rewrites
# bodies (compression, say) must not be added below RequestContext; tests/backend/api/test_chat.py
# keeps that list.
BODY_SEND = "lorechat.body_send"
# The scope key under which our uvicorn protocol (server.py) puts a weak reference to the request's uvicorn cycle:
# its transport is where the native relay writes token frames.
HTTP_CYCLE = "lorechat.http_cycle"
_UVICORN_HTTPTOOLS = "uvicorn.protocols.http.httptools_impl"
# After the visitor stopped reading, how long the end of the response may take before the connection is dropped.
_LAST_WRITE_SECONDS = 1.0


class SseSink:
    """Frames the turn's events (ids 1, 2, 3… as `events.frame`) and writes each as one ASGI body message.

    With a `TurnLog` (resumable streams, Redis configured) every frame is also appended to the log, and a
    visitor who leaves detaches the socket instead of ending the turn: the answer goes on into the log, for a
    resume on any replica (D2 "kept generating for resumption")."""

    __slots__ = ("_cycle", "_log", "_next_id", "_send", "_tap", "ended")

    def __init__(self, send: Send, log: TurnLog | None = None, *, cycle: Any = None) -> None:
        self._send: Send | None = send
        self._cycle = cycle  # uvicorn's RequestResponseCycle of this response, when the server gave it (HTTP_CYCLE)
        self._log = log
        self._next_id = 1
        self._tap: Any = None  # the native relay's tap while it writes our frames (chat/native_relay.py)
        self.ended = False  # a terminal event went out: nothing may follow it, keepalives included (INV-3)

    @property
    def resumable(self) -> bool:
        """Whether the rest of the turn would be kept for a resume if the visitor left now."""
        return self._log is not None and self._log.available

    @property
    def detached(self) -> bool:
        return self._send is None

    def detach(self) -> None:
        """Nobody reads the socket any more: later events go to the log only (or nowhere)."""
        self._send = None
        if self._tap is not None:
            self._tap.detach()

    # The native relay (chat/native_relay.py) writes token frames itself, to uvicorn's transport, framed as
    # uvicorn's `send` frames a chunked body; the sink lends it the next id and its log meanwhile.

    def pipe_target(self) -> Any:
        """uvicorn's request cycle when the native relay may write this response's body itself (uvicorn's
        httptools protocol, a chunked body under way, the reader attached); else None."""
        cycle = self._cycle
        if self._send is None or type(cycle).__module__ != _UVICORN_HTTPTOOLS:
            return None
        if cycle.chunked_encoding is not True or cycle.response_complete or cycle.disconnected:
            return None
        return cycle

    def lend(self, tap: Any) -> tuple[int, NativeLog | None]:
        """The tap writes frames from now on: the next frame's id, and the log it appends each frame to."""
        self._tap = tap
        return self._next_id, self._log.native() if self._log is not None else None

    def take_back(self, next_id: int) -> None:
        self._tap = None
        self._next_id = next_id

    async def write_frame(self, body: bytes) -> None:
        """A frame the tap made (and logged) that had to wait for the visitor's socket."""
        await self._write(body)

    async def send(self, event: SourcesEvent | DoneEvent | ErrorEvent) -> None:
        terminal = not isinstance(event, SourcesEvent)
        if terminal:
            self.ended = True
        event_id = self._next_id
        self._next_id = event_id + 1
        body = frame(event, event_id)
        if self._log is not None:
            self._log.append(event_id, body, terminal=terminal)
        await self._write(body)

    async def send_text(self, text: str) -> None:
        await self._write(self._token(text))

    def send_text_now(self, text: str) -> Awaitable[None] | None:
        """`send_text` without a task step, for a caller inside a callback (the token relay, chat/relay.py): the
        ASGI `send` runs inline up to where it would wait. None when the write is done; else an awaitable that
        finishes it (the visitor's socket is full: the server waits for it to drain before writing)."""
        body = self._token(text)
        send = self._send
        if send is None:
            return None
        # An ASGI send is a coroutine function: stepped here as a task would step it.
        sending = cast(Coroutine[Any, Any, None], send({"type": "http.response.body", "body": body, "more_body": True}))
        try:
            waiting = sending.send(None)
        except StopIteration:
            return None
        except OSError:
            if not self._kept_for_resume():
                raise
            return None
        return self._finish(sending, waiting)

    async def _finish(self, sending: Coroutine[Any, Any, None], waiting: object) -> None:
        try:
            await finish_coroutine(sending, waiting)
        except OSError:
            if not self._kept_for_resume():
                raise

    def _token(self, text: str) -> bytes:
        """The next token frame, appended to the log when there is one."""
        event_id = self._next_id
        self._next_id = event_id + 1
        body = token_frame(text, event_id)
        if self._log is not None:
            self._log.append(event_id, body)
        return body

    async def _write(self, body: bytes) -> None:
        send = self._send
        if send is None:
            return
        try:
            await send({"type": "http.response.body", "body": body, "more_body": True})
        except OSError:
            if not self._kept_for_resume():
                raise

    def _kept_for_resume(self) -> bool:
        """The connection broke under a write: with a log, the log keeps the rest for a resume (True); without
        one, the caller lets the error go on up."""
        if self._log is None:
            return False
        self._send = None
        return True

    async def keepalive(self) -> None:
        if not self.ended and self._send is not None:
            await self._send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})

    async def close(self) -> None:
        if self._log is not None:
            await self._log.close()


async def finish_coroutine(coroutine: Coroutine[Any, Any, None], waiting: object) -> None:
    """Go on with a coroutine that `send(None)` left suspended on `waiting`, as the task running it would have:
    resume it once what it waits on is done; if we are cancelled meanwhile, it is cancelled where it waits."""
    while True:
        try:
            if asyncio.isfuture(waiting):
                await asyncio.wait((waiting,))
            elif waiting is None:  # a bare yield: one loop turn
                await asyncio.sleep(0)
            else:
                raise RuntimeError(f"an ASGI send waited on {waiting!r}, not an asyncio future")
        except BaseException as exc:
            try:
                waiting = coroutine.throw(exc)
            except StopIteration:
                return
            continue
        try:
            waiting = coroutine.send(None)
        except StopIteration:
            return


TurnRunner = Callable[[SseSink, TurnControl], Awaitable[None]]


class TurnEventStream(Response):
    """Streams one prepared turn. `on_close` runs however the response ends, even if the stream never started
    (the visitor left at once), so the stream slot is released and an unstarted turn is finished."""

    media_type = "text/event-stream"

    def __init__(
        self,
        run: TurnRunner,
        *,
        on_close: Callable[[], Awaitable[None]],
        headers: Mapping[str, str],
        keepalive_seconds: float,
        log: TurnLog | None = None,
        on_detach: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        # Not Response.__init__: a body of b"" would add "content-length: 0" to a stream.
        self.status_code = 200
        self.background = None
        self.init_headers(headers)
        self._run = run
        self._on_close = on_close
        self._keepalive = keepalive_seconds
        self._log = log
        self._on_detach = on_detach  # may the answer go on without its reader? (False: end it as without a log)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        control = TurnControl()
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            # The start went through every middleware (headers, CORS); the body skips those that only look at the
            # start (middleware.BODY_SEND), when the app runs behind RequestContext.
            send = scope.get(BODY_SEND, send)
            cycle = scope.get(HTTP_CYCLE)
            sink = SseSink(send, self._log, cycle=cycle() if cycle is not None else None)
            watcher = asyncio.ensure_future(self._watch_client(receive, sink, control))
            try:
                await self._run(sink, control)
            finally:
                watcher.cancel()
                with anyio.CancelScope(shield=True):
                    await sink.close()
            await self._end(send, control, reader_gone=sink.detached)
        except OSError:
            # uvicorn raises this from `send` once the client is gone: the turn already stored what it had.
            log.debug("chat stream: client gone")
        finally:
            with anyio.CancelScope(shield=True):  # runs to its end even when the server cancels us
                await self._on_close()

    async def _end(self, send: Send, control: TurnControl, *, reader_gone: bool) -> None:
        last = {"type": "http.response.body", "body": b"", "more_body": False}
        if not reader_gone and control.reason not in (SEND_TIMEOUT, DISCONNECTED):
            await send(last)
            return
        # A reader that stopped reading would block the end of the response forever: try briefly, then return
        # with the response unfinished, which makes uvicorn close the connection (L3).
        try:
            async with asyncio.timeout(_LAST_WRITE_SECONDS):
                await send(last)
        except TimeoutError:
            log.info("chat stream: dropped a client that stopped reading")

    async def _watch_client(self, receive: Receive, sink: SseSink, control: TurnControl) -> None:
        """Until the turn ends: notice the visitor leaving (D1/D2) and keep a quiet stream alive."""
        keepalive = self._keepalive
        pinged = control.now()
        try:
            while True:
                # The stream's last write: a send ending (the turn stamps `since`) or our last keepalive.
                quiet_since = pinged if control.sending else max(control.since, pinged)
                try:
                    async with asyncio.timeout(max(quiet_since + keepalive - control.now(), 0.0)):
                        message = await receive()
                except TimeoutError:
                    if not control.sending and control.now() - max(control.since, pinged) >= keepalive:
                        await sink.keepalive()
                        pinged = control.now()
                    elif control.sending:
                        pinged = control.now()  # a write is under way; look again one period later
                    continue
                if message["type"] == "http.disconnect":
                    # Once a tier answers (it set the idle deadline) a resumable answer goes on into its log, for
                    # a resume; before that, leaving ends the turn as without resumption (D1: no model is kept
                    # busy for a visitor who left before the answer began).
                    if sink.resumable and control.idle_seconds is not None and await self._may_detach():
                        sink.detach()
                    else:
                        control.cancel(DISCONNECTED)
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("chat stream: the client watcher failed")

    async def _may_detach(self) -> bool:
        return self._on_detach is None or await self._on_detach()
