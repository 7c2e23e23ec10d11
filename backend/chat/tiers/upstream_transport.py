"""The `openai` tier's HTTP transport: HTTP/1.1 with keep-alive on asyncio sockets, parsed by httptools.

httpx's default transport reads through httpcore and h11: per network read an anyio cancel scope, exception-
mapping context managers and an extra loop turn, then h11's pure-Python parser and four generator layers. A
streamed answer is one read per token, and that path was the largest single cost of relaying it (BENCHMARKS.md,
"Streaming at 1,000 streams"). Here llhttp parses each read in C inside the socket's callback (upstream_connection.py),
and the response body is one async iterator over what the socket delivered. The `openai` SDK above stays unchanged: it
builds the request, maps status codes, timeouts and connection failures to its errors (this transport raises
httpx's own exceptions, as httpx's transport does). It speaks to the upstream directly, over TCP or TLS: httpx
ignores proxies from the environment once given a transport, so the tier uses httpx's own transport for an upstream
behind one (openai_tier.py).
"""

# Read and write deadlines are values handed down from httpx's per-request timeouts and checked by one timer per
# connection (the point of this design), not `asyncio.timeout` scopes per await.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

import httpx2

from backend.chat.tiers.upstream_connection import ConnectionFault, UpstreamConnection

Origin = tuple[str, str, int]
# The response's extension holding its `ResponseBody` itself: httpx wraps the stream it is given in a generator of
# its own (elapsed time), which a reader that wants each read as it arrives (or pushed: `listen`) goes around.
BODY_EXTENSION = "lorechat.response_body"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_FAULTS: dict[str, type[httpx2.TransportError]] = {
    "ReadTimeout": httpx2.ReadTimeout,
    "WriteTimeout": httpx2.WriteTimeout,
    "ReadError": httpx2.ReadError,
    "WriteError": httpx2.WriteError,
    "RemoteProtocolError": httpx2.RemoteProtocolError,
}


class UpstreamTransport(httpx2.AsyncBaseTransport):
    """A connection pool per origin with httpx's `Limits` (connections, idle keep-alive ones, their expiry) and
    TLS checked against the system's CAs (or `SSL_CERT_FILE`; `ssl_context` replaces them)."""

    def __init__(self, *, limits: httpx2.Limits, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context or httpx2.create_ssl_context()
        self._max_idle = limits.max_keepalive_connections
        self._expiry = limits.keepalive_expiry if limits.keepalive_expiry is not None else float("inf")
        self._slots = asyncio.Semaphore(limits.max_connections) if limits.max_connections else None
        self._idle: dict[Origin, list[UpstreamConnection]] = {}
        self._open: set[UpstreamConnection] = set()
        self._closed = False

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        if url.scheme not in _DEFAULT_PORTS:
            raise httpx2.UnsupportedProtocol(f"the upstream URL must be http or https, not {url.scheme!r}")
        timeouts = request.extensions.get("timeout", {})
        origin = (url.scheme, url.host, url.port or _DEFAULT_PORTS[url.scheme])
        head = _request_head(request)
        await self._take_slot(timeouts.get("pool"), request)
        try:
            connection = self._idle_connection(origin) or await self._connect(origin, timeouts.get("connect"), request)
            try:
                connection.expect_response(head_only=request.method == "HEAD")
                await _send(connection, head, request, timeouts.get("write"))
                while not connection.head_done:
                    if connection.fault is not None:
                        raise connection.fault
                    await connection.wait(timeouts.get("read"))
            except ConnectionFault as fault:
                await self._discard(connection)
                raise _mapped(fault, request) from None
            except BaseException:
                await self._discard(connection)
                raise
        except BaseException:
            self._give_slot()
            raise
        body = ResponseBody(self, origin, connection, request, timeouts.get("read"))
        return httpx2.Response(
            connection.status,
            headers=connection.headers,
            stream=body,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": connection.reason, BODY_EXTENSION: body},
        )

    async def aclose(self) -> None:
        self._closed = True
        self._idle.clear()
        for connection in list(self._open):
            connection.close()
        self._open.clear()

    async def give_back(self, origin: Origin, connection: UpstreamConnection) -> None:
        """A response's end: its connection goes back to the pool when it was read whole and may be kept."""
        self._give_slot()
        reusable = connection.complete and connection.keep_alive and connection.reusable and not connection.chunks
        if reusable and not self._closed and (self._max_idle is None or self._idle_count() < self._max_idle):
            connection.idle_since = asyncio.get_running_loop().time()
            self._idle.setdefault(origin, []).append(connection)
            return
        await self._discard(connection)

    def _idle_connection(self, origin: Origin) -> UpstreamConnection | None:
        """The most recently used idle connection that the server has not closed in the meantime."""
        self._drop_expired(asyncio.get_running_loop().time())
        idle = self._idle.get(origin)
        return idle.pop() if idle else None

    async def _connect(self, origin: Origin, timeout: float | None, request: httpx2.Request) -> UpstreamConnection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = self._ssl_context if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: UpstreamConnection(loop), host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            raise httpx2.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from None
        except OSError as exc:  # refused, unreachable, a certificate not trusted (ssl errors are OSErrors)
            raise httpx2.ConnectError(str(exc) or type(exc).__name__, request=request) from None
        self._open.add(connection)
        return connection

    async def _discard(self, connection: UpstreamConnection) -> None:
        self._open.discard(connection)
        await connection.aclose()

    def _drop_expired(self, now: float) -> None:
        for origin, idle in list(self._idle.items()):
            kept = [c for c in idle if c.reusable and now - c.idle_since < self._expiry]
            for connection in idle:
                if connection not in kept:
                    self._open.discard(connection)
                    connection.close()
            if kept:
                self._idle[origin] = kept
            else:
                del self._idle[origin]

    def _idle_count(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    async def _take_slot(self, timeout: float | None, request: httpx2.Request) -> None:
        if self._slots is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx2.PoolTimeout("no upstream connection became free in time", request=request) from None

    def _give_slot(self) -> None:
        if self._slots is not None:
            self._slots.release()


class ResponseBody(httpx2.AsyncByteStream):
    """A response's body: each step returns everything the socket delivered since the last one."""

    def __init__(
        self,
        pool: UpstreamTransport,
        origin: Origin,
        connection: UpstreamConnection,
        request: httpx2.Request,
        read_timeout: float | None,
    ) -> None:
        self._pool = pool
        self._origin = origin
        self._connection = connection
        self._request = request
        self._read_timeout = read_timeout
        self._closed = False

    def __aiter__(self) -> ResponseBody:  # an iterator object, not a generator: one frame less per piece
        return self

    async def __anext__(self) -> bytes:
        while True:
            data = self.read_now()
            if data:
                return data
            if data is None:
                raise StopAsyncIteration
            try:
                await self._connection.wait(self._read_timeout)
            except ConnectionFault as fault:
                raise _mapped(fault, self._request) from None

    def read_now(self) -> bytes | None:
        """What the socket delivered since the last read (b"" when nothing yet); None once the body ended. Raises
        httpx's exception for a broken connection."""
        connection = self._connection
        if connection.chunks:
            return connection.take()
        if connection.complete or self._closed:
            return None
        if connection.fault is not None:
            raise _mapped(connection.fault, self._request)
        return b""

    # Push mode (chat/relay.py): instead of awaiting each read, the reader is called back inside the socket's
    # callback and reads with `read_now`. No read timeout applies then: the turn's watchdog owns the idle deadline.

    def listen(self, notify: Callable[[], None] | None) -> None:
        """Call `notify()` whenever bytes, the body's end or a fault arrived (None: stop)."""
        self._connection.listener = notify

    def hold(self) -> None:
        """Leave the socket unread until `release` (the upstream's next bytes wait in the kernel)."""
        self._connection.hold()

    def release(self) -> None:
        self._connection.release()

    @property
    def connection(self) -> UpstreamConnection:
        """Its connection, for the native relay: its tap pipes the body, its buffer keeps what came while held."""
        return self._connection

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        connection = self._connection
        connection.listener = None
        if connection.tap is not None:
            connection.tap.stop()  # nothing more is written from this body
        connection.release()
        await self._pool.give_back(self._origin, connection)


def _request_head(request: httpx2.Request) -> bytes:
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
    for name, value in request.headers.raw:
        if any(c in name or c in value for c in (b"\r", b"\n", b"\0")) or b":" in name or not name:
            raise httpx2.LocalProtocolError(f"illegal header {name!r}", request=request)
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _send(connection: UpstreamConnection, head: bytes, request: httpx2.Request, timeout: float | None) -> None:
    """The head and the body; the first body part leaves with the head (one write for a JSON request)."""
    chunked = any(
        name.lower() == b"transfer-encoding" and b"chunked" in value.lower() for name, value in request.headers.raw
    )
    pending = head
    async for part in request.stream:  # type: ignore[union-attr]  # an async stream, as httpx gives transports
        if not part:
            continue
        pending += b"%x\r\n%s\r\n" % (len(part), part) if chunked else part
        await connection.write(pending, timeout)
        pending = b""
    if chunked:
        pending += b"0\r\n\r\n"
    if pending:
        await connection.write(pending, timeout)


def _mapped(fault: ConnectionFault, request: httpx2.Request) -> httpx2.TransportError:
    return _FAULTS.get(fault.kind, httpx2.ReadError)(str(fault), request=request)
