"""How the service is served: uvicorn's httptools protocol with a bounded request head (L5), for serve and tests.

uvicorn with httptools buffers a request line and headers of any size for as long as the client likes: one
client can hold megabytes per socket, and sockets that never finish their headers stay open forever. The
protocol here counts the bytes of each request head as they arrive and refuses a head larger than
`server.max_header_bytes` with 431 before buffering more of it, and closes a connection whose request (head,
then body) is not complete `server.header_timeout_seconds` after its first byte (or after the connection
opened). Body bytes and responses go through httptools untouched, so the streaming path costs what it did
(BENCHMARKS.md): one timer per request, nothing per token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from backend.errors import ErrorCode, LorechatError
from backend.settings import ServerSettings
from backend.startup_heap import freeze_startup_heap
from backend.stream.event_stream import HTTP_CYCLE

log = logging.getLogger("lorechat.server")

# What the native token relay (chat/_token_pipe.c) reads and writes of uvicorn's httptools request cycle. Those
# are uvicorn internals, so pyproject.toml bounds uvicorn to the releases tested, and `native_path_problem` checks
# them at start-up: a uvicorn whose cycle no longer carries them gets the Python relay (logged, shown in /readyz).
_CYCLE_FIELDS = frozenset({"transport", "flow", "disconnected", "chunked_encoding", "response_complete"})
_FLOW_FIELDS = frozenset({"write_paused"})


def native_path_problem(cycle: type | None = None, flow: type | None = None) -> str | None:
    """Why the native relay may not write into uvicorn's request cycle here; None when it may. `cycle` and `flow`
    default to uvicorn's own classes (tests pass others)."""
    try:
        from uvicorn.protocols.http.flow_control import FlowControl
        from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
    except ImportError as exc:
        return f"uvicorn {uvicorn.__version__} has no httptools request cycle ({exc})"
    for cls, fields in ((cycle or RequestResponseCycle, _CYCLE_FIELDS), (flow or FlowControl, _FLOW_FIELDS)):
        # The attributes __init__ assigns (STORE_ATTR names live in co_names): no instance is needed to look.
        assigned = set(getattr(getattr(vars(cls).get("__init__"), "__code__", None), "co_names", ()))
        missing = sorted(fields - assigned)
        if missing:
            return f"uvicorn {uvicorn.__version__}'s {cls.__name__} lacks {', '.join(missing)}"
    return None


# After a 431, how long and how much of the rest of the refused request is read (and dropped) before closing.
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 1 << 20


class BoundedHeadProtocol(HttpToolsProtocol):
    """HttpToolsProtocol refusing oversized request heads (431) and closing connections slow to send one."""

    max_head_bytes = 65_536
    head_timeout_seconds = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # between requests and inside a request line + headers
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._discarding: int | None = None  # bytes read and dropped after a 431
        self._heads_done = 0  # request heads parsed on this connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._in_head:  # body bytes: the hot path, untouched
            super().data_received(data)
            return
        if self._discarding is not None:
            self._discard(len(data))
            return
        if self._head_timer is None:
            self._arm_head_timer()
        room = self.max_head_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # Feed only what fits: if the head ends inside it, the rest is body (or the next request).
        self._head_bytes = self.max_head_bytes
        heads_before = self._heads_done
        if room > 0:
            super().data_received(data[:room])
        if self.transport.is_closing() or self.parser is None:
            return
        if self._heads_done == heads_before:
            self._refuse_head()
            return
        self.data_received(data[room:])

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads_done += 1
        super().on_headers_complete()
        # The app's task starts on a later loop turn, with this scope: the chat stream finds its cycle there
        # (event_stream.HTTP_CYCLE), and the native relay writes token frames to its transport. A weak reference:
        # the scope must not keep its cycle alive (a reference cycle left to the garbage collector per request).
        if self.cycle is not None:
            self.cycle.scope[HTTP_CYCLE] = weakref.ref(self.cycle)  # type: ignore[literal-required]

    def on_message_complete(self) -> None:
        # The clock runs until the whole request is in: a body trickled a byte at a time is the same attack as
        # a head trickled a byte at a time (bodies are bounded in size by BodySizeLimit, I1).
        self._disarm_head_timer()
        super().on_message_complete()
        # The next bytes on this connection start the next request's head; its clock starts with them.
        self._in_head = True
        self._head_bytes = 0

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            # Slow-loris: nothing useful to answer, and a response could interleave with a pipelined one.
            log.info("closed a connection that sent no complete request within %gs", self.head_timeout_seconds)
            self.transport.close()

    def _refuse_head(self) -> None:
        log.info("refused a request head larger than %d bytes", self.max_head_bytes)
        self._disarm_head_timer()
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a response is still going out on this connection: no 431 in its middle
            return
        error = LorechatError(
            ErrorCode.headers_too_large, f"Request line and headers are larger than {self.max_head_bytes} bytes"
        )
        body = json.dumps(error.body()).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )
        # Closing now, with the client's bytes unread, would make the kernel send a reset that destroys the
        # 431 before the client reads it. So: half-close, then read and drop (never buffer) what the client is
        # still sending, up to a bound in bytes and in time, then close.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._discarding = 0
        self.loop.call_later(_LINGER_SECONDS, self.transport.close)

    def _discard(self, size: int) -> None:
        self._discarding = (self._discarding or 0) + size
        if self._discarding > _LINGER_BYTES:
            self.transport.close()


def bounded_head_protocol(server: ServerSettings) -> type[BoundedHeadProtocol]:
    """The protocol class uvicorn instantiates per connection, carrying this service's bounds."""
    return type(
        "LorechatHttpProtocol",
        (BoundedHeadProtocol,),
        {"max_head_bytes": server.max_header_bytes, "head_timeout_seconds": server.header_timeout_seconds},
    )


def uvicorn_config(app: Any, server: ServerSettings, **options: Any) -> uvicorn.Config:
    """uvicorn.Config for the app with the bounded protocol; `options` are uvicorn's (host, port, log_level…)."""
    options.setdefault("proxy_headers", False)  # client IPs are resolved by our own trusted-proxy rules (S1)
    return uvicorn.Config(app, http=bounded_head_protocol(server), **options)


class ExitSignal:
    """SIGTERM, passed to the app at once. uvicorn on its own only stops accepting and waits for open
    connections to close, which a stream never does by itself: the app binds a callback that stops every
    open turn (each stores its partial answer and ends with a retryable error, F12)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._callback: Callable[[], object] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
        self._loop = loop
        self._callback = callback

    def set(self) -> None:
        """Safe from a signal handler or another thread: the callback runs on the app's loop."""
        loop, callback = self._loop, self._callback
        if loop is not None and callback is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback)


class Server(uvicorn.Server):
    """uvicorn's server, telling the app about SIGTERM/SIGINT as soon as it arrives (`ExitSignal`), and with
    `freeze_startup_heap` keeping what the app built at startup out of the garbage collector (startup_heap.py)."""

    def __init__(self, config: uvicorn.Config, *, freeze_startup_heap: bool = False) -> None:
        super().__init__(config)
        self._freeze_startup_heap = freeze_startup_heap

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._freeze_startup_heap and not self.should_exit:
            freeze_startup_heap()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        exit_signal = getattr(getattr(self.config.app, "state", None), "exit_signal", None)
        if isinstance(exit_signal, ExitSignal):
            exit_signal.set()
