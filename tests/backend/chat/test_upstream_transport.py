"""The `openai` tier's transport (tiers/upstream_transport.py): httpx over asyncio sockets.

The tier's streaming and fault tests (test_tiers_openai.py, tests/backend/api/test_faults.py) already run
through it; these cover what they do not reach: TLS, keep-alive and a server closing an idle connection, the
read deadline and its re-arming, a refused connection, and flow control against a fast sender.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpcore2
import httpx2
import pytest
import trustme

from backend.chat.tiers.base import TierError
from backend.chat.tiers.openai_tier import UPSTREAM_LIMITS, OpenAITier
from backend.chat.tiers.upstream_transport import AsyncioBackend, AsyncioStream, UpstreamTransport
from backend.settings import OpenAITierSettings
from tests.backend.chat.helpers import engine_prompt

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

SSE_ANSWER = (
    b"".join(
        b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % word for word in (b"Kept", b" warm", b".")
    )
    + b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)


@asynccontextmanager
async def serving(handler: Handler, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[int, list[int]]]:
    """A local server on a free port; yields (port, connection numbers in order of their requests)."""
    seen: list[int] = []
    connections = 0
    writers: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writers.append(writer)
        number = connections
        try:
            while await _read_request(reader):
                seen.append(number)
                await handler(reader, writer)
                if writer.is_closing():
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> bool:
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head:
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":", 1)[1]))
    return True


async def sse_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n" % len(SSE_ANSWER)
        + SSE_ANSWER
    )
    await writer.drain()


async def test_streams_an_answer_over_tls_checked_against_its_ca() -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    async with serving(sse_reply, tls=server_tls) as (port, _):
        settings = OpenAITierSettings(name="tls", base_url=f"https://localhost:{port}/v1", model="m")
        tier = OpenAITier(settings, transport=UpstreamTransport(limits=UPSTREAM_LIMITS, ssl_context=client_tls))
        try:
            text = "".join([delta.text async for delta in tier.stream(engine_prompt(max_tokens=64))])
        finally:
            await tier.aclose()
        assert text == "Kept warm."

        # The same server is refused by a client that does not trust its CA: a connect failure, not a hang.
        untrusting = OpenAITier(settings)
        try:
            with pytest.raises(TierError) as refused:
                [delta async for delta in untrusting.stream(engine_prompt(max_tokens=64))]
        finally:
            await untrusting.aclose()
        assert refused.value.reason == "connect"


async def test_keeps_a_connection_alive_and_notices_when_the_server_closed_it() -> None:
    closing = False

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await sse_reply(reader, writer)
        if closing:
            writer.close()  # the idle connection goes away between requests, as servers' keep-alive timeouts do

    async with serving(reply) as (port, seen):
        async with httpx2.AsyncClient(transport=UpstreamTransport(limits=UPSTREAM_LIMITS)) as client:
            for _ in range(2):
                assert (await client.post(f"http://127.0.0.1:{port}/v1/chat/completions")).content == SSE_ANSWER
            assert seen == [1, 1]  # one connection, reused

            closing = True
            assert (await client.post(f"http://127.0.0.1:{port}/v1/chat/completions")).status_code == 200
            await asyncio.sleep(0.1)  # the server's close arrives while the connection sits in the pool
            closing = False
            assert (await client.post(f"http://127.0.0.1:{port}/v1/chat/completions")).status_code == 200
            assert seen == [1, 1, 1, 2]  # the closed one was not reused


async def test_a_silent_upstream_times_out_once_per_wait_not_per_connection() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(6):  # a byte every 0.1 s: each read waits less than its 0.25 s timeout
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.1)
        await asyncio.sleep(5)  # then silence

    async with serving(trickle) as (port, _):
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=2)
        await stream.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", timeout=2)
        received = b""
        while len(received) < 6:
            received += await stream.read(1024, timeout=0.25)  # the deadline moves with every read
        started = time.monotonic()
        with pytest.raises(httpcore2.ReadTimeout):
            await stream.read(1024, timeout=0.25)
        assert 0.2 <= time.monotonic() - started < 2.0
        await stream.aclose()
    assert received == b"x" * 6


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with serving(sse_reply) as (port, _):
        pass  # the port is free again: nothing listens there now
    with pytest.raises(httpcore2.ConnectError):
        await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=2)


async def test_a_fast_sender_is_paused_until_the_reader_catches_up() -> None:
    payload = bytes(range(256)) * 16384  # 4 MiB

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        await writer.drain()

    async with serving(flood) as (port, _):
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=2)
        assert isinstance(stream, AsyncioStream)
        await stream.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", timeout=2)
        await asyncio.sleep(0.5)  # the sender fills what the socket and our buffer take
        connection = stream._connection
        assert connection.reading_paused and connection.buffered < 1024 * 1024
        received = bytearray()
        while len(received) < len(payload):
            chunk = await stream.read(65536, timeout=5)
            assert 0 < len(chunk) <= 65536
            received += chunk
        await stream.aclose()
    assert bytes(received) == payload and not connection.reading_paused
