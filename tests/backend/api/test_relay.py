"""The token relays through a real uvicorn: after the first token an `openai` tier's answer is written from the
upstream socket's callback, in C (chat/native_relay.py, the default) or in Python (chat/relay.py, with
`server.native_token_path` false). What the pull loop guaranteed must hold in both: dense pieces coalesce, a reader
that stops reading for a while gets every piece in order, and what was sent is what is stored."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.stream.event_stream import SseSink
from tests.backend.api.harness import TEST_SERVER, Backend, LiveApp, extractive_tier, live_app, new_peer, upstream_tier
from tests.backend.api.streams import Reply, assert_turn_stored, metric, post_chat, read_tokens
from tests.fakes import Script, ScriptedOpenAI

QUESTION = "What does salt do to the crumb?"


@pytest.fixture(scope="module")
def python_relay_app(
    backend: Backend, fake: ScriptedOpenAI, api_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApp]:
    """main_app with the Python relay."""
    with live_app(
        template=api_index,
        workdir=tmp_path_factory.mktemp(f"python-relay-{backend.name}"),
        backend=backend,
        tiers=[upstream_tier(fake), extractive_tier()],
        server=TEST_SERVER.model_copy(update={"native_token_path": False}),
    ) as app:
        yield app


@pytest.fixture(params=["native", "push"])
def relay(request: pytest.FixtureRequest, main_app: LiveApp, python_relay_app: LiveApp) -> tuple[str, LiveApp]:
    """Each relay, and the app that uses it."""
    return request.param, main_app if request.param == "native" else python_relay_app


async def test_dense_pieces_leave_in_fewer_writes_and_are_stored_whole(
    relay: tuple[str, LiveApp], upstream: ScriptedOpenAI
) -> None:
    path, app = relay
    words = [f" w{i}" for i in range(150)]
    upstream.enqueue(Script(tokens=words, token_interval=0.001))  # 1 ms apart: within one 15 ms window
    async with app.client() as client:
        relayed = await metric(client, "lorechat_token_path_total", path=path)
        reply = await post_chat(client, {"query": QUESTION})
        assert await metric(client, "lorechat_token_path_total", path=path) == relayed + 1  # this relay, not pulled
    async with app.db() as db:
        await assert_turn_stored(db, reply, question=QUESTION)
    assert reply.stream.text == "".join(words) and reply.stream.done["cascade_tier"] == "upstream"
    # Held for a window after each dense write, the upstream's next pieces arrive in one read and leave in one write.
    assert len(reply.stream.tokens) < len(words) // 3, len(reply.stream.tokens)


async def test_a_reader_that_pauses_gets_every_piece_in_order(
    relay: tuple[str, LiveApp], upstream: ScriptedOpenAI
) -> None:
    _, app = relay
    big = [f"{i:05d}" + "y" * 16_000 for i in range(1000)]  # 16 MB
    upstream.enqueue(Script(tokens=big, token_interval=0.001))
    small_window = httpx.AsyncHTTPTransport(
        local_address=new_peer(), socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)]
    )
    async with httpx.AsyncClient(base_url=app.base_url, transport=small_window, timeout=30) as client:
        async with client.stream("POST", "/api/v1/chat", json={"query": QUESTION}) as response:
            chunks = response.aiter_raw()
            raw = await read_tokens(chunks, 1)
            await asyncio.sleep(1.5)  # not reading (within the 5 s send timeout): the service must wait for us
            async for chunk in chunks:
                raw += chunk
    reply = Reply(response.status_code, response.headers, raw)
    async with app.db() as db:
        await assert_turn_stored(db, reply, question=QUESTION)
    assert reply.stream.done and reply.stream.text == "".join(big)


@pytest.mark.parametrize("fails", [False, True])
async def test_an_inline_write_that_must_wait_finishes_later_or_fails_through_its_awaitable(fails: bool) -> None:
    """The inline send: run up to where the ASGI `send` waits, finished by the awaitable it returns."""
    writable = asyncio.Event()
    written: list[bytes] = []
    cleaned: list[bool] = []

    async def send(message: dict[str, object]) -> None:
        try:
            if not writable.is_set():
                await writable.wait()  # a full socket: uvicorn waits for it to drain before writing
            if fails:
                raise ConnectionResetError("the visitor went away")
            body = message["body"]
            assert isinstance(body, bytes)
            written.append(body)
        finally:
            cleaned.append(True)

    sink = SseSink(send)
    rest = sink.send_text_now("Salt")
    assert rest is not None and written == []
    writable.set()
    if fails:
        with pytest.raises(ConnectionResetError):
            await rest
    else:
        await rest
        assert written == [b'id: 1\nevent: token\ndata: {"text":"Salt"}\n\n']
        assert sink.send_text_now(" tightens") is None  # writable now: written inline, nothing to await
        assert written[1].startswith(b"id: 2\n")
    assert len(cleaned) == (1 if fails else 2)  # each send ran to its end


async def test_a_waiting_inline_write_cancelled_is_cancelled_where_it_waits() -> None:
    entered, cancelled = asyncio.Event(), asyncio.Event()

    async def send(message: dict[str, object]) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()  # never writable
        except asyncio.CancelledError:
            cancelled.set()
            raise

    rest = SseSink(send).send_text_now("Salt")
    assert rest is not None and entered.is_set()
    finishing = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    finishing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await finishing
    assert cancelled.is_set()
