"""The token relays. Their rules (relay.py), each against a stream that pushes on command and a sink whose
socket can be made full: only written text counts as sent, a full socket holds the upstream and sets the send clock,
dense pieces hold it for one window, a cancelled turn writes nothing more. Then both relays through a real uvicorn:
after the first token an `openai` tier's answer is written from the upstream socket's callback, in C
(chat/native_relay.py, the default) or in Python (chat/relay.py, with `server.native_token_path` false); what the pull
loop guaranteed must hold in both: dense pieces coalesce, a reader that stops reading for a while gets every piece in
order, and what was sent is what is stored (the C tap's own rules: test_token_pipe.py)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from backend.chat.relay import TokenRelay
from backend.errors import ErrorCode, LorechatError
from backend.stream.event_stream import SseSink
from backend.stream.running import STOPPED, TurnControl
from tests.backend.api.harness import TEST_SERVER, Backend, LiveApp, extractive_tier, live_app, new_peer, upstream_tier
from tests.backend.api.streams import Reply, assert_turn_stored, metric, post_chat, read_tokens
from tests.fakes import Script, ScriptedOpenAI


class PushingStream:
    """TierStream's push side: the test calls `text` and `end` as the upstream socket's callback would."""

    def __init__(self) -> None:
        self.held = False
        self._on_text: Callable[[str], None] | None = None
        self._on_end: Callable[[LorechatError | None], None] | None = None

    def push(self, on_text: Callable[[str], None], on_end: Callable[[LorechatError | None], None]) -> bool:
        self._on_text, self._on_end = on_text, on_end
        return True

    def hold(self) -> None:
        self.held = True

    def release(self) -> None:
        self.held = False

    def text(self, piece: str) -> None:
        assert self._on_text is not None and not self.held, "pushed while held"
        self._on_text(piece)

    def end(self, error: LorechatError | None = None) -> None:
        assert self._on_end is not None
        self._on_end(error)


class Sink:
    def __init__(self) -> None:
        self.written: list[str] = []
        self.full: asyncio.Future[None] | None = None  # set: the next write waits on it

    def send_text_now(self, text: str) -> Awaitable[None] | None:
        if self.full is None:
            self.written.append(text)
            return None
        waiting = self.full

        async def rest() -> None:
            await waiting
            self.written.append(text)

        return rest()


class Outcome:
    def __init__(self) -> None:
        self.sent_pieces: list[str] = []

    def sent(self, text: str) -> None:
        self.sent_pieces.append(text)


def token_relay(window: float = 0.0) -> tuple[TokenRelay, PushingStream, Sink, Outcome, TurnControl]:
    stream, sink, outcome, control = PushingStream(), Sink(), Outcome(), TurnControl()
    made = TokenRelay(
        stream=cast(Any, stream), sink=sink, outcome=cast(Any, outcome), control=control, window=window,
        last_write=control.now() - 1,
    )  # fmt: skip
    return made, stream, sink, outcome, control


async def test_a_full_socket_holds_the_upstream_until_the_write_ends_and_only_then_counts_it_sent() -> None:
    made, stream, sink, outcome, control = token_relay()
    running = asyncio.ensure_future(made.run())
    await asyncio.sleep(0)
    stream.text("Salt")
    assert sink.written == outcome.sent_pieces == ["Salt"] and not control.sending
    sink.full = asyncio.get_running_loop().create_future()
    stream.text(" tightens")
    assert stream.held and control.sending  # the send deadline runs; the upstream waits
    assert outcome.sent_pieces == ["Salt"]
    sink.full.set_result(None)
    sink.full = None
    await asyncio.sleep(0.01)
    assert sink.written == outcome.sent_pieces == ["Salt", " tightens"]
    assert not stream.held and not control.sending
    stream.text(" gluten")
    stream.end()
    assert await running is True
    assert outcome.sent_pieces == ["Salt", " tightens", " gluten"]


async def test_dense_pieces_hold_the_upstream_for_one_window() -> None:
    made, stream, sink, _, _ = token_relay(window=0.05)
    running = asyncio.ensure_future(made.run())
    await asyncio.sleep(0)
    stream.text("a")  # the last write was a second ago: not dense
    assert not stream.held
    stream.text("b")  # right after: dense, so the next pieces gather for one window
    assert stream.held
    await asyncio.sleep(0.08)
    assert not stream.held
    stream.end()
    assert await running is True and sink.written == ["a", "b"]


async def test_a_tier_that_breaks_off_ends_the_relay_with_its_error() -> None:
    made, stream, _, outcome, _ = token_relay()
    running = asyncio.ensure_future(made.run())
    await asyncio.sleep(0)
    stream.text("Salt")
    stream.end(LorechatError(ErrorCode.upstream_interrupted, "interrupted"))
    with pytest.raises(LorechatError) as raised:
        await running
    assert raised.value.code is ErrorCode.upstream_interrupted and outcome.sent_pieces == ["Salt"]


async def test_a_turn_cancelled_while_its_write_waits_writes_nothing_more() -> None:
    made, stream, sink, outcome, control = token_relay()
    running = asyncio.ensure_future(made.run())
    await asyncio.sleep(0)
    sink.full = asyncio.get_running_loop().create_future()
    stream.text("Salt")
    control.cancel(STOPPED)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert sink.written == outcome.sent_pieces == [] and stream.held
    assert not sink.full.done() or sink.full.cancelled()


async def test_once_the_turn_is_being_cancelled_a_pushed_piece_is_not_written() -> None:
    made, stream, sink, outcome, control = token_relay()
    running = asyncio.ensure_future(made.run())
    await asyncio.sleep(0)
    control.cancel(STOPPED)  # its scope's cancellation reaches the task at the next loop turn
    stream.text("late")
    assert sink.written == outcome.sent_pieces == [] and stream.held
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running


# ---- both relays through a real uvicorn

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
def each_relay(request: pytest.FixtureRequest, main_app: LiveApp, python_relay_app: LiveApp) -> tuple[str, LiveApp]:
    """Each relay, and the app that uses it."""
    return request.param, main_app if request.param == "native" else python_relay_app


async def test_dense_pieces_leave_in_fewer_writes_and_are_stored_whole(
    each_relay: tuple[str, LiveApp], upstream: ScriptedOpenAI
) -> None:
    path, app = each_relay
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
    each_relay: tuple[str, LiveApp], upstream: ScriptedOpenAI
) -> None:
    _, app = each_relay
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
