"""One HTTP/1.1 connection to an upstream: an `asyncio.Protocol` whose bytes httptools (llhttp, in C) parses as
they arrive, so a streamed answer's body reaches its reader as decoded pieces without a parser step in Python.

The reader (upstream_transport.py) either waits on one future at a time, or sets a `listener` that the socket's
callback calls whenever bytes, the end or a fault arrived (push mode: the token relay, chat/relay.py, reads and
writes each piece inside that callback, with no task step per token). The read timeout is one deadline per
connection, checked by a timer that re-arms itself only when it fires early (a timer per read cost more than the
read). Past `READ_HIGH_WATER` unread bytes, and while the reader holds it (`hold`), the socket is not read.
"""

# Read and write deadlines are values handed down from httpx's per-request timeouts and checked by one timer per
# connection (the point of this design), not `asyncio.timeout` scopes per await.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import httptools

try:  # the token relay's native hot path (chat/_token_pipe.c), built by `pip install`
    from backend.chat._token_pipe import Tap
except ImportError:  # a source tree nobody built: the Python relay does the same, slower
    Tap = None

READ_HIGH_WATER = 256 * 1024


class ConnectionFault(Exception):
    """Why the connection cannot go on; the transport maps `kind` to httpx's exception of that name."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "ReadTimeout", "ReadError", "RemoteProtocolError", "WriteError", "WriteTimeout"


class UpstreamConnection(asyncio.Protocol):
    """A socket, the response being read on it, and whether it may carry another request (keep-alive)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self.unusable = False  # closed, broken, or a response not read to its end: never back in the pool
        self.fault: ConnectionFault | None = None
        self._lost = False  # the socket is closed (connection_lost ran)
        self._parser: httptools.HttpResponseParser | None = None
        self._head_only = False
        # The response being read.
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self._framed = False  # content-length or chunked: the end is in the bytes, not at the socket's close
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        # Waiting.
        self._waiter: asyncio.Future[None] | None = None
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._reading_paused = False  # past READ_HIGH_WATER
        self._held = False  # by the reader (hold / release)
        self._socket_paused = False  # what the transport was told: paused while either of the two holds
        self._writing_paused = False
        # Push mode: called (synchronously, inside the socket's callback) instead of waking a waiter.
        self.listener: Callable[[], None] | None = None
        # The parser's body callback, in C: hands the body on to `on_body` until the native relay pipes it
        # (chat/native_relay.py); None without the native module.
        self.tap: Tap | None = None
        self._drained: asyncio.Future[None] | None = None

    # -- the request ---------------------------------------------------------------------------------------------

    def expect_response(self, *, head_only: bool) -> None:
        """A request is about to be written: read its response (`head_only` for HEAD, which has no body)."""
        self.status, self.reason, self.headers = 0, b"", []
        self.head_done = self.complete = self.keep_alive = self._framed = False
        self._head_only = head_only
        if Tap is None:
            self._parser = httptools.HttpResponseParser(self)
            return
        self.tap = Tap(self.on_body)
        self._parser = httptools.HttpResponseParser(_ParserCallbacks(self, self.tap.on_body))

    async def write(self, data: bytes, timeout: float | None) -> None:
        transport = self.transport
        if self.fault is not None or transport is None or transport.is_closing():
            raise self.fault or ConnectionFault("WriteError", "the upstream connection is closed")
        transport.write(data)
        if self._writing_paused:
            drained = self.loop.create_future()
            self._drained = drained
            try:
                async with asyncio.timeout(timeout):
                    await drained
            except TimeoutError:
                raise ConnectionFault("WriteTimeout", "the upstream did not take the request in time") from None
            if self.fault is not None:
                raise ConnectionFault("WriteError", "the upstream connection was lost while writing")

    # -- reading ---------------------------------------------------------------------------------------------------

    async def wait(self, timeout: float | None) -> None:
        """Until something arrives (or the end, or a fault); raises a read timeout after `timeout` seconds."""
        waiter = self.loop.create_future()
        self._waiter = waiter
        if timeout is not None:
            self._arm(self.loop.time() + timeout)
        try:
            await waiter
        finally:
            self._waiter = None
            self._deadline = None

    def take(self) -> bytes:
        """Every body byte received so far, in one piece."""
        chunks = self.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self._reading_paused:
            self._reading_paused = False
            self._apply_reading()
        return data

    def hold(self) -> None:
        """Stop reading the socket until `release`: what the upstream sends meanwhile waits in the kernel (TCP
        pushes back on the upstream), and arrives later in one read."""
        self._held = True
        self._apply_reading()

    def release(self) -> None:
        self._held = False
        self._apply_reading()

    @property
    def reusable(self) -> bool:
        """Whether this idle connection may carry the next request: the server has not closed it or said anything."""
        transport = self.transport
        return not self.unusable and self.fault is None and transport is not None and not transport.is_closing()

    def close(self) -> None:
        self.unusable = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    async def aclose(self) -> None:
        """Closed when this returns: `close()` only schedules the socket's close for a later loop turn, and an
        upstream left mid-answer must learn it now (D2), even if the loop is busy after us."""
        transport = self.transport
        self.unusable = True
        if transport is None or self._lost:
            return
        if not transport.is_closing():
            transport.close()
        try:
            await asyncio.sleep(0)  # the turn in which the transport closes its socket
        finally:
            transport.abort()

    # -- asyncio.Protocol ------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:  # the server spoke while no request was out: not a connection to reuse
            self._fail("RemoteProtocolError", "the upstream sent bytes nobody asked for")
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail("RemoteProtocolError", f"the upstream's response is not valid HTTP/1.1: {exc}")
            return
        # A listener hears of bytes, the end or a fault; a read that the native tap relayed itself is none of those.
        if self.listener is None or self.chunks or self.complete:
            self._wake()

    def eof_received(self) -> bool:
        self._peer_closed(None)
        return False  # close our side too: HTTP/1.1 has no use for a half-open connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._peer_closed(exc)  # a TLS peer may close without a separate end of file
        self._release_writer()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._release_writer()

    # -- httptools callbacks ---------------------------------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # informational (100 Continue): the real response follows
            self.reason, self.headers, self._framed = b"", [], False
            return
        self.status = status
        self.head_done = True
        if self._head_only or status in (204, 304):
            self._end_message(keep_alive=False)  # no body follows; not reused, so no stray bytes can confuse us

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > READ_HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self._apply_reading()

    def on_message_complete(self) -> None:
        if self.head_done and not self.complete:
            assert self._parser is not None
            self._end_message(keep_alive=self._parser.should_keep_alive())

    # -- internals -------------------------------------------------------------------------------------------------

    def _peer_closed(self, exc: Exception | None) -> None:
        """The socket ended: a body without a length given ends here; any other response being read was cut."""
        self.unusable = True
        if self._parser is not None and not self.complete:
            if exc is not None:
                self._fail("ReadError", str(exc) or type(exc).__name__)
            elif self.head_done and not self._framed:
                self._end_message(keep_alive=False)
            else:
                self._fail("RemoteProtocolError", "the upstream closed the connection before the response ended")
        self._wake()

    def _end_message(self, *, keep_alive: bool) -> None:
        self.complete = True
        self.keep_alive = keep_alive and not self.unusable
        self._parser = None  # bytes after the end are unasked for

    def _fail(self, kind: str, message: str) -> None:
        if self.fault is None:
            self.fault = ConnectionFault(kind, message)
        self._parser = None
        self.close()
        self._wake()

    def _apply_reading(self) -> None:
        """Tell the transport to read or not, once per change: paused while the buffer is full or the reader holds."""
        paused = self._reading_paused or self._held
        transport = self.transport
        if paused == self._socket_paused or transport is None or self.fault is not None or transport.is_closing():
            return
        self._socket_paused = paused
        if paused:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def _wake(self) -> None:
        listener = self.listener
        if listener is not None:
            listener()
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _release_writer(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _arm(self, deadline: float) -> None:
        """The waiting read times out at `deadline`. A later deadline only moves the check (the timer re-arms
        itself when it fires early), an earlier one starts a new timer."""
        self._deadline = deadline
        if self._timer is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        deadline, waiter = self._deadline, self._waiter
        if deadline is None or waiter is None or waiter.done():
            return
        if self.loop.time() >= deadline:
            waiter.set_exception(ConnectionFault("ReadTimeout", "the upstream sent nothing within the read timeout"))
        else:
            self._arm(deadline)


class _ParserCallbacks:
    """httptools' protocol object: the connection's own callbacks, the body through its native tap (httptools
    looks each callback up once, when the parser is made)."""

    __slots__ = ("on_body", "on_header", "on_headers_complete", "on_message_complete", "on_status")

    def __init__(self, connection: UpstreamConnection, on_body: Callable[[bytes], None]) -> None:
        self.on_status = connection.on_status
        self.on_header = connection.on_header
        self.on_headers_complete = connection.on_headers_complete
        self.on_body = on_body
        self.on_message_complete = connection.on_message_complete
