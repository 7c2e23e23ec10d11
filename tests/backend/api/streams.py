"""Reads chat streams off the wire: a strict SSE parser, the stream invariants, and the stored-turn checks."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from backend.storage.records import ConversationDetail, MessageView
from backend.storage.repository import Sessions, get_conversation
from backend.stream.events import DoneEvent, ErrorEvent, EventName, Source, TokenEvent

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
TERMINAL = (EventName.done.value, EventName.error.value)
STORED_TERMINAL = ("done", "error", "interrupted", "stopped")


@dataclass(frozen=True)
class Event:
    id: int
    name: str
    data: Any


@dataclass
class Stream:
    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    def named(self, name: str) -> list[Event]:
        return [event for event in self.events if event.name == name]

    @property
    def tokens(self) -> list[str]:
        return [event.data["text"] for event in self.named("token")]

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def terminal(self) -> Event:
        return self.events[-1]

    @property
    def done(self) -> dict[str, Any]:
        assert self.terminal.name == "done", f"expected done, stream ended with {self.terminal}"
        return self.terminal.data


def parse_sse(raw: bytes, *, complete: bool = True, first_id: int = 1) -> Stream:
    """Every event must have exactly one `id:` (1, 2, 3…; a resumed stream counts on from `first_id`), one
    `event:` and one `data:` line of JSON.

    `complete=False` (a stream the client left) ignores a trailing, unterminated event.
    """
    lines = _LINE_BREAK.split(raw.decode("utf-8"))
    stream = Stream()
    fields: list[tuple[str, str]] = []
    for line in lines[:-1]:
        if line == "":
            if fields:
                stream.events.append(_event(fields, expected_id=len(stream.events) + first_id))
                fields = []
        elif line.startswith(":"):
            stream.comments.append(line[1:].strip())
        else:
            name, colon, value = line.partition(":")
            assert colon, f"a line without a field name: {line!r}"
            fields.append((name, value[1:] if value.startswith(" ") else value))
    if complete:
        assert lines[-1] == "" and not fields, f"the stream ended inside an event: {fields} {lines[-1]!r}"
    return stream


def _event(fields: list[tuple[str, str]], *, expected_id: int) -> Event:
    names = [name for name, _ in fields]
    assert sorted(names) == ["data", "event", "id"], f"an event needs one id, event and data line, got {fields}"
    values = dict(fields)
    assert values["id"] == str(expected_id), f"event ids must count up by one: {values['id']} != {expected_id}"
    assert values["event"] in {name.value for name in EventName}, values["event"]
    return Event(id=expected_id, name=values["event"], data=json.loads(values["data"]))


def check_stream(stream: Stream) -> None:
    """INV-3 and the event vocabulary: sources first, then tokens, then exactly one terminal event, last."""
    assert stream.events, "an empty stream"
    first, *rest = stream.events
    assert first.name == "sources" and isinstance(first.data, list)
    for source in first.data:
        assert set(source) == set(Source.model_fields)
        Source.model_validate(source)
    terminals = [event for event in stream.events if event.name in TERMINAL]
    assert len(terminals) == 1 and terminals[0] is stream.events[-1], [e.name for e in stream.events]
    for event in rest[:-1]:
        assert event.name == "token" and set(event.data) == {"text"} and event.data["text"]
        TokenEvent.model_validate(event.data)
    model = DoneEvent if stream.terminal.name == "done" else ErrorEvent
    # Every field but `type`, which is the frame's `event:` line.
    assert set(stream.terminal.data) == set(model.model_fields) - {"type"}
    model.model_validate(stream.terminal.data)
    if stream.terminal.name == "error":
        assert stream.terminal.data["request_id"]


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    raw: bytes

    @property
    def stream(self) -> Stream:
        assert self.status == 200, (self.status, self.raw[:500])
        assert self.headers["content-type"].startswith("text/event-stream")
        assert b"\r" not in self.raw, "one line ending (LF) throughout the stream, keepalives included"
        stream = parse_sse(self.raw)
        check_stream(stream)
        return stream

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def conversation_id(self) -> str:
        return self.headers["x-conversation-id"]


async def post_chat(client: httpx.AsyncClient, body: Any = None, **kwargs: Any) -> Reply:
    if body is not None:
        kwargs["json"] = body
    async with client.stream("POST", "/api/v1/chat", **kwargs) as response:
        raw = await response.aread()
    return Reply(response.status_code, response.headers, raw)


def assert_error(reply: Reply | httpx.Response, status: int, code: str) -> dict[str, Any]:
    """INV-6: the one JSON error shape, with a request id and nothing that looks like internals."""
    raw = reply.raw if isinstance(reply, Reply) else reply.content
    got = reply.status_code if isinstance(reply, httpx.Response) else reply.status
    assert got == status, (got, raw[:300])
    assert reply.headers["content-type"].startswith("application/json")
    body = json.loads(raw)
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["retryable"], bool)
    assert body["request_id"] and body["request_id"] == reply.headers["x-request-id"]
    text = raw.decode()
    for leak in ("Traceback", 'File "', "sqlalchemy", "asyncpg", "SELECT ", "127.0.0.1:", "/work/"):
        assert leak not in text, f"{leak!r} in an error body: {text}"
    return body


async def stored_turn(sessions: Sessions, conversation_id: str, *, owner_id: str | None = None) -> ConversationDetail:
    detail = await get_conversation(sessions, conversation_id=conversation_id, owner_id=owner_id)
    assert detail is not None, f"conversation {conversation_id} not stored"
    return detail


async def settled(
    sessions: Sessions, conversation_id: str, *, owner_id: str | None = None, within: float = 10
) -> ConversationDetail:
    """The conversation once its last answer left "streaming" (the server finishes after a client leaves)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        detail = await stored_turn(sessions, conversation_id, owner_id=owner_id)
        if detail.messages and detail.messages[-1].status != "streaming":
            return detail
        assert asyncio.get_running_loop().time() < deadline, "the answer stayed 'streaming'"
        await asyncio.sleep(0.05)


async def assert_turn_stored(
    sessions: Sessions, reply: Reply, *, question: str, owner_id: str | None = None
) -> MessageView:
    """INV-1 and INV-2 for a 200: the question stored, the answer terminal, and equal to the tokens if done."""
    stream = reply.stream
    # No waiting: the terminal event is sent only after the final write, so the row is final already (INV-2).
    detail = await stored_turn(sessions, reply.conversation_id, owner_id=owner_id)
    user, answer = detail.messages[-2:]
    assert (user.role, user.status, user.content) == ("user", "done", question)
    assert answer.role == "assistant" and answer.status in STORED_TERMINAL
    assert answer.content == stream.text  # every generated token reached the client, and was kept
    if stream.terminal.name == "done":
        done = stream.done
        assert answer.status == ("stopped" if done["finish_reason"] == "stopped" else "done")
        assert (done["conversation_id"], done["message_id"]) == (reply.conversation_id, answer.id)
        assert answer.cascade_tier == done["cascade_tier"]
    else:
        assert answer.status in ("error", "interrupted")
        assert answer.error_code == stream.terminal.data["code"]
    return answer


async def timed_chat(client: httpx.AsyncClient, body: Any) -> tuple[Reply, float]:
    """post_chat that also measures, on the client, the seconds from sending to the `sources` event."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    to_sources = float("nan")
    raw = b""
    async with client.stream("POST", "/api/v1/chat", json=body) as response:
        async for chunk in response.aiter_raw():
            raw += chunk
            if to_sources != to_sources and b"event: sources" in raw:  # NaN until seen
                to_sources = loop.time() - started
    return Reply(response.status_code, response.headers, raw), to_sources


async def read_tokens(chunks: AsyncIterator[bytes], count: int) -> bytes:
    """Reads from one iterator the caller keeps until `count` tokens arrived (a dropped `aiter_raw()` closes)."""
    raw = b""
    while len(parse_sse(raw, complete=False).tokens) < count:
        raw += await anext(chunks)
    return raw


async def metric(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    """One sample from the app's /metrics (0 when absent), e.g. metric(c, "lorechat_streams_active")."""
    text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def gauge_settles(client: httpx.AsyncClient, name: str, value: float, *, within: float = 5) -> bool:
    """True once the gauge reads `value` (the server finishes its bookkeeping just after the last byte)."""
    deadline = asyncio.get_running_loop().time() + within
    while await metric(client, name) != value:
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
