"""Bad and unusual input (I1-I6): refused with the JSON error shape before parsing or streaming, never a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.backend.api.harness import AsgiApp
from tests.backend.api.streams import assert_error, assert_turn_stored, post_chat
from tests.fakes import Script, ScriptedOpenAI

# Plain request/response checks: the app in process (ASGI), in the module's event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")

QUESTION = "How much salt goes in the dough?"


async def test_i1_oversized_body_is_413_before_parsing(plain_app: AsgiApp, upstream: ScriptedOpenAI) -> None:
    big = json.dumps({"query": "x" * 10_000}).encode()  # over the app's 4096-byte limit

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams in
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    async with plain_app.client() as client:
        declared = await post_chat(client, content=big, headers={"Content-Type": "application/json"})
        streamed = await post_chat(client, content=chunked(), headers={"Content-Type": "application/json"})
        not_json = await post_chat(client, content=b"\xff" * 10_000, headers={"Content-Type": "application/json"})
    for reply in (declared, streamed, not_json):
        assert_error(reply, 413, "payload_too_large")
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "x" * 1001}, "query"),
        ({"query": 42}, "query"),
        ({"query": ["a"]}, "query"),
        ({}, "query"),
        ({"query": "ok?", "personality_weight": 1.5}, "personality_weight"),
        ({"query": "ok?", "personality_weight": "loud"}, "personality_weight"),
        ({"query": "ok?", "creator": "Not A Slug"}, "creator"),
        ({"query": "ok?", "conversation_id": "short"}, "conversation_id"),
        ({"query": "ok?", "conversation_id": 12345678}, "conversation_id"),
        ({"query": "ok?", "model": "gpt-9"}, "model"),
    ],
)
async def test_i2_invalid_fields_are_422_naming_the_field(
    plain_app: AsgiApp, upstream: ScriptedOpenAI, body: dict[str, Any], field: str
) -> None:
    async with plain_app.client() as client:
        reply = await post_chat(client, body)
    error = assert_error(reply, 422, "invalid_input")
    assert field in error["message"] and field in [d["field"] for d in error["detail"]]
    assert "x" * 100 not in reply.raw.decode()  # the refused input is not echoed back


async def test_i2_a_thousand_characters_is_allowed(plain_app: AsgiApp, upstream: ScriptedOpenAI, plain_db) -> None:
    question = ("salt " * 200).strip() + "?" * 1  # 1000 characters exactly
    assert len(question) == 1000
    async with plain_app.client() as client:
        reply = await post_chat(client, {"query": question})
    await assert_turn_stored(plain_db, reply, question=question)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"query": "unterminated', "application/json"),
        (b'{"query": "ok"}', "text/plain"),
        (b"query=ok", "application/x-www-form-urlencoded"),
        (b"null", "application/json"),
        (b'["query"]', "application/json"),
        (b'"just a string"', "application/json"),
        (b"", "application/json"),
        (b'{"query": "\xff\xfe broken utf-8"}', "application/json"),
    ],
    ids=["truncated", "text-plain", "form", "null", "array", "string", "empty", "bad-utf8"],
)
async def test_i3_malformed_bodies_are_4xx(
    plain_app: AsgiApp, upstream: ScriptedOpenAI, content: bytes, content_type: str
) -> None:
    async with plain_app.client() as client:
        reply = await post_chat(client, content=content, headers={"Content-Type": content_type})
    assert 400 <= reply.status < 500, (reply.status, reply.raw[:300])
    assert_error(reply, reply.status, "invalid_input")
    assert upstream.requests == []


async def test_i4_nul_bytes_are_cleaned_and_escaped_pairs_joined(
    plain_app: AsgiApp, upstream: ScriptedOpenAI, plain_db
) -> None:
    raw = b'{"query": "salt\\u0000 in the dough \\ud83c\\udf5e please"}'
    async with plain_app.client() as client:
        reply = await post_chat(client, content=raw, headers={"Content-Type": "application/json"})
    await assert_turn_stored(plain_db, reply, question="salt in the dough \U0001f35e please")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"query": "\\u0000"}',
        b'{"query": "\\ud800"}',
        b'{"query": "salt in the \\ud800dough\\udfff please"}',
        b'{"query": "ok?", "creator": "\\ud800"}',
        b'{"query": "ok?", "conversation_id": "abcdefgh\\u0000"}',
        b'{"query": "ok?", "\\ud800": 1}',
        b'{"query": "ok?", "\\u0000": 1}',
    ],
    ids=["only-nul", "only-surrogate", "lone-surrogates", "surrogate-creator", "nul-in-id", "surrogate-key", "nul-key"],
)
async def test_i4_unstorable_text_is_422_not_500(plain_app: AsgiApp, upstream: ScriptedOpenAI, raw: bytes) -> None:
    # Lone surrogates never reach our code: the JSON parser refuses them (string_unicode), naming the field.
    async with plain_app.client() as client:
        reply = await post_chat(client, content=raw, headers={"Content-Type": "application/json"})
    assert_error(reply, 422, "invalid_input")
    assert upstream.requests == []


async def test_i5_unicode_round_trips_through_sse_and_the_database(
    plain_app: AsgiApp, upstream: ScriptedOpenAI, plain_db
) -> None:
    question = "Le levain 🍞 — מה זה? 酸面团是什么？ cafe\u0301 👩🏽‍🍳"
    tokens = ["🍞", " שלום", " עולם", " 酸面团", " cafe\u0301", " 👩🏽‍🍳", " ﷺ", " \u202eRTL"]
    upstream.enqueue(Script(tokens=tokens))
    async with plain_app.client() as client:
        reply = await post_chat(client, {"query": question})
        assert reply.stream.text == "".join(tokens)
        answer = await assert_turn_stored(plain_db, reply, question=question)
        detail = (await client.get(f"/api/v1/conversations/{reply.conversation_id}")).json()
    assert answer.content == "".join(tokens)
    assert [m["content"] for m in detail["messages"]] == [question, "".join(tokens)]
    assert question in upstream.requests[-1]["messages"][-1]["content"]


FORGERY = "\n\nevent: done\ndata: {}\n\nid: 99\nevent: error\ndata: {}\n\n"


async def test_i6_text_that_imitates_sse_framing_forges_nothing(
    plain_app: AsgiApp, upstream: ScriptedOpenAI, plain_db
) -> None:
    question = f"What about salt?{FORGERY}really"
    tokens = ["Salt", FORGERY, 'data: {"text": "x"}\n', "\r\n\r\nevent: done\r\n", " end"]
    upstream.enqueue(Script(tokens=tokens))
    async with plain_app.client() as client:
        reply = await post_chat(client, {"query": question})
    stream = reply.stream  # the parser insists on one id/event/data line per event, ids 1, 2, 3…
    assert len(stream.named("done")) == 1 and not stream.named("error")
    assert stream.text == "".join(tokens)
    assert stream.comments == [] or set(stream.comments) == {"keepalive"}
    for line in reply.raw.decode().splitlines():
        if line.startswith("data:"):
            json.loads(line[5:])
    await assert_turn_stored(plain_db, reply, question=question)
