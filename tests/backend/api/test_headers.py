"""L5: request heads are bounded in size and in time, on the real uvicorn protocol the service runs.

Regression tests for issue 9 item 1: a 1 MB header got 200, a 50 MB one was buffered whole, and half-sent
requests stayed open for as long as their clients liked (uvicorn with httptools has no bound of its own).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.settings import ServerSettings
from tests.backend.api.harness import Backend, LiveApp, extractive_tier, live_app
from tests.backend.api.streams import post_chat

HEAD_TIMEOUT = 2.0  # short for the tests, long enough that a busy machine still serves the good requests
LIMIT = 65_536


@pytest.fixture(scope="module")
def app(api_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    server = ServerSettings(keepalive_seconds=0.2, send_timeout_seconds=5, header_timeout_seconds=HEAD_TIMEOUT)
    with live_app(
        template=api_index,
        workdir=tmp_path_factory.mktemp("headers"),
        backend=Backend("embedded", "", ""),
        tiers=[extractive_tier()],
        server=server,
    ) as live:
        assert live.settings.server.max_header_bytes == LIMIT  # the default under test
        yield live


def _port(app: LiveApp) -> int:
    return int(app.base_url.rsplit(":", 1)[1])


async def _request(app: LiveApp, head: bytes, *, chunk: int = 65_536) -> tuple[bytes, float]:
    """Send `head` (as much of it as the server takes) and read what comes back until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(app))
    started = time.monotonic()
    try:
        for start in range(0, len(head), chunk):
            writer.write(head[start : start + chunk])
            await writer.drain()
    except ConnectionError:
        pass  # the server closed while we were still sending: what it answered is already in the buffer
    try:
        reply = await asyncio.wait_for(reader.read(), timeout=10)
    except ConnectionError:
        reply = b""
    writer.close()
    return reply, time.monotonic() - started


def _get(header_bytes: int, *, headers: int = 1) -> bytes:
    each = header_bytes // headers
    lines = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * each) for i in range(headers))
    return b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + lines + b"Connection: close\r\n\r\n"


@pytest.mark.parametrize(
    "head",
    [
        _get(1_000_000),  # the probe's 1 MB header
        _get(LIMIT + 1),
        _get(200_000, headers=2_000),  # many small headers
        b"GET /healthz?" + b"q" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # a huge request line
    ],
    ids=["1MB-header", "just-over", "2000-headers", "long-request-line"],
)
async def test_l5_an_oversized_request_head_is_431_not_buffered(app: LiveApp, head: bytes) -> None:
    reply, took = await _request(app, head)
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]
    assert b'"code": "headers_too_large"' in reply
    assert took < 5


async def test_l5_a_50mb_header_is_refused_after_the_limit(app: LiveApp) -> None:
    # The server answers after the first 64 KiB and cuts the connection soon after: no 50 MB goes in.
    _reader, writer = await asyncio.open_connection("127.0.0.1", _port(app))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    sent = 0
    with pytest.raises(ConnectionError):
        while sent < 50_000_000:
            writer.write(b"a" * 1_000_000)
            await asyncio.wait_for(writer.drain(), timeout=10)
            sent += 1_000_000
    assert sent < 50_000_000
    writer.close()


async def test_l5_a_head_within_the_limit_is_served(app: LiveApp) -> None:
    reply, _ = await _request(app, _get(LIMIT - 2_000))
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
    # Keep-alive: the second request's head is counted from zero, not on top of the first one's.
    head = _get(40_000).replace(b"Connection: close\r\n", b"")
    # One write: the server reads both heads in one chunk, past the limit, with the first one ending inside it.
    reply, _ = await _request(app, head + _get(40_000), chunk=200_000)
    assert reply.count(b"HTTP/1.1 200 ") == 2, reply[:300]


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\n", b"GET /healthz HTTP/1.1\r\nX-Slow: aaaa"])
async def test_l5_a_connection_that_never_finishes_its_head_is_closed(app: LiveApp, sent: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(app))
    started = time.monotonic()
    writer.write(sent)
    try:
        # Slow-loris: a byte every 0.3 s keeps the socket busy but never completes the head.
        async def trickle() -> None:
            while True:
                await asyncio.sleep(0.3)
                writer.write(b"a")

        dripping = asyncio.create_task(trickle()) if sent else None
        closed = await asyncio.wait_for(reader.read(), timeout=HEAD_TIMEOUT + 5)
    finally:
        if sent:
            dripping.cancel()
        writer.close()
    assert closed == b""
    assert HEAD_TIMEOUT * 0.8 < time.monotonic() - started < HEAD_TIMEOUT + 2


async def test_l5_healthz_and_chat_stay_fast_with_100_half_sent_requests(app: LiveApp) -> None:
    sockets = []
    for _ in range(100):
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(app))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 60_000)
        sockets.append((reader, writer))
    try:
        async with app.client() as client:
            started = time.monotonic()
            assert (await client.get("/healthz")).status_code == 200
            assert time.monotonic() - started < 1
            reply = await post_chat(client, {"query": "What does salt do to the crumb?"})
            assert reply.stream.terminal.name == "done"
            assert time.monotonic() - started < 5
        # ... and every one of them is closed by the server once its time is up.
        closed = await asyncio.wait_for(
            asyncio.gather(*(reader.read() for reader, _ in sockets)), timeout=HEAD_TIMEOUT + 5
        )
        assert closed == [b""] * 100
    finally:
        for _, writer in sockets:
            writer.close()


async def test_l5_a_body_trickled_past_the_timeout_is_closed_too(app: LiveApp) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(app))
    started = time.monotonic()
    writer.write(b"POST /api/v1/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
    writer.write(b"Content-Length: 4000\r\n\r\n")

    async def trickle() -> None:
        while True:
            writer.write(b" ")
            await asyncio.sleep(0.3)

    dripping = asyncio.create_task(trickle())
    try:
        reply = await asyncio.wait_for(reader.read(), timeout=HEAD_TIMEOUT + 5)
    finally:
        dripping.cancel()
        writer.close()
    assert b"200 OK" not in reply
    assert time.monotonic() - started < HEAD_TIMEOUT + 2
