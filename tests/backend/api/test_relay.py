"""The token relay (backend/chat/relay.py) through a real uvicorn: after the first token an `openai` tier's answer
is written from the upstream socket's callback. What the pull loop guaranteed must hold there too: dense pieces
coalesce, a reader that stops reading for a while gets every piece in order, and what was sent is what is stored."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from backend.api.event_stream import SseSink
from backend.storage.repository import Sessions
from tests.backend.api.harness import LiveApp, new_peer
from tests.backend.api.streams import Reply, assert_turn_stored, metric, post_chat, read_tokens
from tests.fakes import Script, ScriptedOpenAI

QUESTION = "What does salt do to the crumb?"


async def test_dense_pieces_leave_in_fewer_writes_and_are_stored_whole(
    main_app: LiveApp, db: Sessions, upstream: ScriptedOpenAI
) -> None:
    words = [f" w{i}" for i in range(150)]
    upstream.enqueue(Script(tokens=words, token_interval=0.001))  # 1 ms apart: within one 15 ms window
    async with main_app.client() as client:
        pushed = await metric(client, "lorechat_token_path_total", path="push")
        reply = await post_chat(client, {"query": QUESTION})
        assert await metric(client, "lorechat_token_path_total", path="push") == pushed + 1  # relayed, not pulled
    await assert_turn_stored(db, reply, question=QUESTION)
    assert reply.stream.text == "".join(words) and reply.stream.done["cascade_tier"] == "upstream"
    # Held for a window after each dense write, the upstream's next pieces arrive in one read and leave in one write.
    assert len(reply.stream.tokens) < len(words) // 3, len(reply.stream.tokens)


async def test_a_reader_that_pauses_gets_every_piece_in_order(
    main_app: LiveApp, db: Sessions, upstream: ScriptedOpenAI
) -> None:
    big = [f"{i:05d}" + "y" * 16_000 for i in range(1000)]  # 16 MB
    upstream.enqueue(Script(tokens=big, token_interval=0.001))
    small_window = httpx.AsyncHTTPTransport(
        local_address=new_peer(), socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)]
    )
    async with httpx.AsyncClient(base_url=main_app.base_url, transport=small_window, timeout=30) as client:
        async with client.stream("POST", "/api/v1/chat", json={"query": QUESTION}) as response:
            chunks = response.aiter_raw()
            raw = await read_tokens(chunks, 1)
            await asyncio.sleep(1.5)  # not reading (within the 5 s send timeout): the service must wait for us
            async for chunk in chunks:
                raw += chunk
    reply = Reply(response.status_code, response.headers, raw)
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
