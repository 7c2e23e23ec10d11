"""The chat turn's HTTP response: server-sent events written straight to the ASGI `send`.

Per token it costs one frame (precomputed bytes + orjson) and one `send`: no generator between the service and
the socket, no cancel scope or timer per event, no lock. Per stream it keeps one small task that watches the
client (disconnect) and sends a keepalive comment when the stream has been quiet for `keepalive_seconds`. The
send and idle deadlines are the process watchdog's (chat/running.py), which reads the turn's clocks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from backend.chat.events import DoneEvent, ErrorEvent, SourcesEvent, frame, token_frame
from backend.chat.running import DISCONNECTED, SEND_TIMEOUT, TurnControl

log = logging.getLogger(__name__)

KEEPALIVE = b": keepalive\n\n"
# After the visitor stopped reading, how long the end of the response may take before the connection is dropped.
_LAST_WRITE_SECONDS = 1.0


class SseSink:
    """Frames the turn's events (ids 1, 2, 3… as `events.frame`) and writes each as one ASGI body message."""

    __slots__ = ("_next_id", "_send", "ended")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._next_id = 1
        self.ended = False  # a terminal event went out: nothing may follow it, keepalives included (INV-3)

    async def send(self, event: SourcesEvent | DoneEvent | ErrorEvent) -> None:
        if not isinstance(event, SourcesEvent):
            self.ended = True
        event_id = self._next_id
        self._next_id = event_id + 1
        await self._send({"type": "http.response.body", "body": frame(event, event_id), "more_body": True})

    async def send_text(self, text: str) -> None:
        event_id = self._next_id
        self._next_id = event_id + 1
        await self._send({"type": "http.response.body", "body": token_frame(text, event_id), "more_body": True})

    async def keepalive(self) -> None:
        if not self.ended:
            await self._send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})


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
    ) -> None:
        # Not Response.__init__: a body of b"" would add "content-length: 0" to a stream.
        self.status_code = 200
        self.background = None
        self.init_headers(headers)
        self._run = run
        self._on_close = on_close
        self._keepalive = keepalive_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        control = TurnControl()
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            sink = SseSink(send)
            watcher = asyncio.ensure_future(self._watch_client(receive, sink, control))
            try:
                await self._run(sink, control)
            finally:
                watcher.cancel()
            await self._end(send, control)
        except OSError:
            # uvicorn raises this from `send` once the client is gone: the turn already stored what it had.
            log.debug("chat stream: client gone")
        finally:
            with anyio.CancelScope(shield=True):  # runs to its end even when the server cancels us
                await self._on_close()

    async def _end(self, send: Send, control: TurnControl) -> None:
        last = {"type": "http.response.body", "body": b"", "more_body": False}
        if control.reason not in (SEND_TIMEOUT, DISCONNECTED):
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
                    control.cancel(DISCONNECTED)
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("chat stream: the client watcher failed")
