"""The `openai` tier's transport (tiers/upstream_transport.py): HTTP/1.1 on asyncio sockets, parsed by httptools.

The tier's streaming and fault tests (test_tiers_openai.py, tests/backend/api/test_faults.py) already run
through it; these cover what they do not reach: TLS, keep-alive and a server closing an idle connection, the
read deadline and its re-arming, a refused connection, flow control against a fast sender, responses cut short
or ended by the connection's close, chunked request bodies and header injection.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx2
import pytest
import trustme

from backend.chat.tiers.base import TierError
from backend.chat.tiers.openai_tier import UPSTREAM_LIMITS, OpenAITier
from backend.chat.tiers.upstream_transport import ResponseBody, UpstreamTransport
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
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(6):  # a byte every 0.1 s: each read waits less than its 0.25 s timeout
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)
        await asyncio.sleep(5)  # then silence

    async with serving(trickle) as (port, _):
        timeout = httpx2.Timeout(2, read=0.25)
        async with httpx2.AsyncClient(transport=UpstreamTransport(limits=UPSTREAM_LIMITS), timeout=timeout) as client:
            async with client.stream("GET", f"http://127.0.0.1:{port}/") as response:
                received = b""
                body = response.aiter_raw()
                while len(received) < 6:
                    received += await anext(body)  # the deadline moves with every read
                started = time.monotonic()
                with pytest.raises(httpx2.ReadTimeout):
                    await anext(body)
                assert 0.2 <= time.monotonic() - started < 2.0
    assert received == b"x" * 6


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with serving(sse_reply) as (port, _):
        pass  # the port is free again: nothing listens there now
    async with httpx2.AsyncClient(transport=UpstreamTransport(limits=UPSTREAM_LIMITS)) as client:
        with pytest.raises(httpx2.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_a_fast_sender_is_paused_until_the_reader_catches_up() -> None:
    payload = bytes(range(256)) * 16384  # 4 MiB

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload) + payload)
        await writer.drain()

    async with serving(flood) as (port, seen):
        async with httpx2.AsyncClient(transport=UpstreamTransport(limits=UPSTREAM_LIMITS)) as client:
            async with client.stream("GET", f"http://127.0.0.1:{port}/") as response:
                await asyncio.sleep(0.5)  # the sender fills what the socket and our buffer take
                body = response.stream._stream  # type: ignore[attr-defined]  # httpx's timing wrapper around ours
                assert isinstance(body, ResponseBody)
                connection = body._connection
                assert connection._reading_paused and connection.buffered < 1024 * 1024
                received = bytearray()
                async for chunk in response.aiter_raw():
                    received += chunk
                assert bytes(received) == payload and not connection._reading_paused
            # Read to its end, the connection carries the next request.
            async with client.stream("GET", f"http://127.0.0.1:{port}/") as response:
                assert len(await response.aread()) == len(payload)
        assert seen == [1, 1]


async def test_a_response_cut_short_is_a_protocol_error_and_the_connection_is_not_reused() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        await writer.drain()
        writer.close()

    async with serving(cut) as (port, seen):
        async with httpx2.AsyncClient(transport=UpstreamTransport(limits=UPSTREAM_LIMITS)) as client:
            for _ in range(2):
                with pytest.raises(httpx2.RemoteProtocolError):
                    await client.get(f"http://127.0.0.1:{port}/")
    assert seen == [1, 2]


async def test_a_body_that_ends_with_the_connection_and_a_chunked_request_body() -> None:
    requests: list[bytes] = []

    async def close_delimited(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    async def raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"0\r\n\r\n"))
        await close_delimited(reader, writer)

    async def parts() -> AsyncIterator[bytes]:
        yield b"one,"
        yield b"two"

    server = await asyncio.start_server(raw, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx2.AsyncClient(transport=UpstreamTransport(limits=UPSTREAM_LIMITS)) as client:
            response = await client.post(f"http://127.0.0.1:{port}/", content=parts())
    finally:
        server.close()
    assert response.status_code == 200 and response.content == b"until the end"
    assert requests[0].endswith(b"\r\n\r\n4\r\none,\r\n3\r\ntwo\r\n0\r\n\r\n")


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    async with serving(sse_reply) as (port, seen):
        async with httpx2.AsyncClient(transport=UpstreamTransport(limits=UPSTREAM_LIMITS)) as client:
            with pytest.raises(httpx2.LocalProtocolError):
                await client.get(f"http://127.0.0.1:{port}/", headers={"x-note": "a\r\nx-injected: 1"})
    assert seen == []


async def test_a_compressed_answer_is_decoded_by_httpx_before_the_tier_reads_it() -> None:
    compressed = gzip.compress(SSE_ANSWER)

    async def gzipped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n"
            b"content-length: %d\r\n\r\n" % len(compressed) + compressed
        )
        await writer.drain()

    async with serving(gzipped) as (port, _):
        settings = OpenAITierSettings(name="gzip", base_url=f"http://127.0.0.1:{port}/v1", model="m")
        tier = OpenAITier(settings)
        try:
            text = "".join([delta.text async for delta in tier.stream(engine_prompt(max_tokens=64))])
        finally:
            await tier.aclose()
    assert text == "Kept warm."


async def test_a_proxy_from_the_environment_is_used_through_httpx_own_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request_lines: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_lines.append(head.split(b"\r\n", 1)[0])
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                await reader.readexactly(int(line.split(b":", 1)[1]))
        await sse_reply(reader, writer)
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "")
    settings = OpenAITierSettings(name="proxied", base_url="http://upstream.invalid/v1", model="m")
    tier = OpenAITier(settings)
    try:
        text = "".join([delta.text async for delta in tier.stream(engine_prompt(max_tokens=64))])
    finally:
        await tier.aclose()
        server.close()
    assert text == "Kept warm."
    assert request_lines == [b"POST http://upstream.invalid/v1/chat/completions HTTP/1.1"]


async def test_a_connection_cap_queues_requests_and_a_full_pool_times_out() -> None:
    async with serving(sse_reply) as (port, seen):
        capped = httpx2.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=5.0)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        async with httpx2.AsyncClient(transport=UpstreamTransport(limits=capped)) as client:
            async with client.stream("POST", url) as held:
                waiting = asyncio.ensure_future(client.post(url))
                await asyncio.sleep(0.2)
                assert not waiting.done()  # queued behind the one connection allowed
                await held.aread()
            assert (await waiting).content == SSE_ANSWER
            async with client.stream("POST", url) as held:
                with pytest.raises(httpx2.PoolTimeout):
                    await client.post(url, timeout=httpx2.Timeout(5, pool=0.2))
    assert seen == [1, 1, 1]  # the queued request and the later one reused the first connection


async def test_informational_responses_are_skipped_and_a_head_response_has_no_body() -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-kind: final\r\n\r\n")
        writer.write(b"hello")  # a HEAD response never has these: they are not read as a body
        await writer.drain()

    async with serving(reply) as (port, _):
        async with httpx2.AsyncClient(transport=UpstreamTransport(limits=UPSTREAM_LIMITS)) as client:
            head = await client.head(f"http://127.0.0.1:{port}/")
            get = await client.get(f"http://127.0.0.1:{port}/")
    assert (head.status_code, head.headers["x-kind"], head.content) == (200, "final", b"")
    assert (get.status_code, get.reason_phrase, get.content) == (200, "OK", b"hello")
