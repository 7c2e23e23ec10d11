"""The `openai` tier's HTTP transport: httpx's own, over sockets read the asyncio way.

httpx reads through httpcore's anyio backend, which for every network read enters a cancel scope for the read
timeout (`anyio.fail_after`), maps exceptions through two generator context managers and yields one extra
loop turn (anyio's checkpoint) even when data is waiting. Relaying a streamed answer is one read per token, and
those wrappers were the largest single cost of the token path (BENCHMARKS.md §12). This backend gives httpcore
the same stream interface on an `asyncio.Protocol`: a read takes what the socket already delivered, or waits
on one future; its timeout is one deadline per connection, checked by a timer that is re-armed only when it
fires early, not a timer per read. Everything else (HTTP/1.1 parsing, the connection pool, keep-alive, TLS
settings, proxies from the environment, httpx's exceptions) stays httpx's.
"""

# The `timeout` parameters are httpcore's AsyncNetworkStream interface, not a style choice.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2
from httpcore2 import AsyncNetworkBackend, AsyncNetworkStream

# Past this many unread bytes the socket stops being read until the reader catches up (flow control).
_READ_HIGH_WATER = 256 * 1024


class UpstreamTransport(httpx2.AsyncHTTPTransport):
    """`httpx2.AsyncHTTPTransport` with its connection pool on `AsyncioBackend` (same limits and TLS defaults:
    the system's CAs, or `SSL_CERT_FILE`; `ssl_context` replaces them)."""

    def __init__(self, *, limits: httpx2.Limits, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(limits=limits)
        # The pool super() built is the same pool on anyio: replaced before any connection exists.
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=ssl_context or httpx2.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=AsyncioBackend(),
        )


class AsyncioBackend(AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                transport, connection = await loop.create_connection(
                    lambda: _Connection(loop), host, port, local_addr=local
                )
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from None
        stream = AsyncioStream(connection)
        _set_options(transport, socket_options)
        return stream

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, connection = await loop.create_unix_connection(lambda: _Connection(loop), path)
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"connecting to {path} timed out") from None
        except OSError as exc:
            raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from None
        _set_options(transport, socket_options)
        return AsyncioStream(connection)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _set_options(transport: asyncio.BaseTransport, options: Iterable[Any] | None) -> None:
    sock = transport.get_extra_info("socket")
    for option in options or ():
        sock.setsockopt(*option)


class _Connection(asyncio.Protocol):
    """One socket: keeps what arrived until the stream's single reader takes it, and wakes that reader."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False
        self.lost = False
        self.lost_error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.deadline: float | None = None  # when the waiting read times out
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.reading_paused = False
        self.writing_paused = False
        self.drained: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > _READ_HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close our side too: HTTP/1.1 has no use for a half-open connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.lost_error = exc
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake()
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def arm(self, deadline: float) -> None:
        """The waiting read times out at `deadline`. One timer per connection: a later deadline only moves the
        check (the timer re-arms itself when it fires early), an earlier one starts a new timer."""
        self.deadline = deadline
        if self._timer is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        deadline, waiter = self.deadline, self.waiter
        if deadline is None or waiter is None or waiter.done():
            return
        if self.loop.time() >= deadline:
            waiter.set_exception(httpcore2.ReadTimeout("the upstream sent nothing within the read timeout"))
        else:
            self.arm(deadline)


class AsyncioStream(AsyncNetworkStream):
    """httpcore's view of one connection (one reader and one writer at a time, as httpcore uses it)."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        connection = self._connection
        if not connection.chunks:
            if connection.lost or connection.eof:
                return self._at_end()
            waiter = connection.loop.create_future()
            connection.waiter = waiter
            if timeout is not None:
                connection.arm(connection.loop.time() + timeout)
            try:
                await waiter
            finally:
                connection.waiter = None
                connection.deadline = None
            if not connection.chunks:
                return self._at_end()
        data = connection.chunks.popleft()
        if len(data) > max_bytes:
            connection.chunks.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        elif connection.chunks:
            parts = [data]
            size = len(data)
            while connection.chunks and size + len(connection.chunks[0]) <= max_bytes:
                part = connection.chunks.popleft()
                parts.append(part)
                size += len(part)
            data = b"".join(parts)
        connection.buffered -= len(data)
        if connection.reading_paused and connection.buffered <= _READ_HIGH_WATER // 4:
            connection.reading_paused = False
            if connection.transport is not None and not connection.lost:
                connection.transport.resume_reading()
        return data

    def _at_end(self) -> bytes:
        """b"" at a clean end of stream (httpcore decides whether that was too early); a broken one raises."""
        error = self._connection.lost_error
        if error is not None:
            raise httpcore2.ReadError(str(error) or type(error).__name__)
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        connection = self._connection
        if connection.lost or connection.transport is None or connection.transport.is_closing():
            raise httpcore2.WriteError("the upstream connection is closed")
        connection.transport.write(buffer)
        if connection.writing_paused:
            drained = connection.loop.create_future()
            connection.drained = drained
            try:
                async with asyncio.timeout(timeout):
                    await drained
            except TimeoutError:
                raise httpcore2.WriteTimeout("the upstream did not take the request in time") from None
            if connection.lost:
                raise httpcore2.WriteError("the upstream connection was lost while writing")

    async def aclose(self) -> None:
        """Closed when this returns, as anyio's stream is: `close()` only schedules the socket's close for a later
        loop turn, and an upstream left mid-answer must learn it now (D2), even if the loop is busy after us."""
        connection = self._connection
        transport = connection.transport
        if transport is None or connection.lost:
            return
        if not transport.is_closing():
            transport.close()
        try:
            await asyncio.sleep(0)  # the turn in which the transport closes its socket
        finally:
            if not connection.lost:
                transport.abort()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> AsyncNetworkStream:
        connection = self._connection
        if connection.transport is None:
            raise httpcore2.ConnectError("the upstream connection is closed")
        try:
            async with asyncio.timeout(timeout):
                tls = await connection.loop.start_tls(
                    connection.transport, connection, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            await self.aclose()
            raise httpcore2.ConnectTimeout("the TLS handshake with the upstream timed out") from None
        except (OSError, ssl.SSLError) as exc:
            await self.aclose()
            raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from None
        if tls is None:
            raise httpcore2.ConnectError("the upstream connection closed during the TLS handshake")
        connection.transport = tls
        return self

    def get_extra_info(self, info: str) -> Any:
        connection = self._connection
        transport = connection.transport
        if info == "is_readable":  # httpcore asks before reusing an idle connection: did the server close it?
            return bool(connection.chunks) or connection.eof or connection.lost
        if transport is None:
            return None
        if info == "ssl_object":
            return transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        if info == "socket":
            return transport.get_extra_info("socket")
        return None
