"""Input the database cannot store, arriving outside the chat body: path ids, cursors, JWT subjects (I4, S2).

Regression tests for issue 9: each of these was a 500 on PostgreSQL (and some on SQLite too).
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from tests.backend.api.harness import AsgiApp, make_token
from tests.backend.api.streams import assert_error, post_chat
from tests.fakes import ScriptedOpenAI

# Plain request/response checks: the app in process (ASGI), in the module's event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")

BAD_IDS = [
    "abc%00defgh",
    "%00",
    "abcdefgh%00",
    "abcdefghijk%0A",
    "%ED%A0%80abcdefgh",  # a lone surrogate, UTF-8-encoded (invalid UTF-8)
    "abc%C3%A9defghij",
    "a" * 65,
    "abc%20defgh",
]


def _cursor(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize("conversation_id", BAD_IDS)
async def test_i4_nul_in_a_conversation_path_id_is_404_not_500(
    plain_app: AsgiApp, upstream: ScriptedOpenAI, conversation_id: str
) -> None:
    for token in (None, make_token("path-id-prober")):
        async with plain_app.client(token=token) as client:
            path = f"/api/v1/conversations/{conversation_id}"
            for reply in (
                await client.get(path),
                await client.delete(path),
                await client.post(f"{path}/stop"),
            ):
                assert_error(reply, 404, "not_found")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor(["2026-01-01T00:00:00+00:00", "abc\u0000defgh"]),
        _cursor(["2026-01-01T00:00:00+00:00", "abc\ud800defgh"]),
        _cursor(["9999-12-31T23:59:59-14:00", "abcdefghij"]),  # past year 9999 in UTC
        _cursor(["0001-01-01T00:00:00+14:00", "abcdefghij"]),  # before year 1 in UTC
        _cursor([1, 2]),
        _cursor({"a": 1, "b": 2}),
        "\u0000",
        "abc\u0000",
    ],
)
async def test_i4_nul_in_a_list_cursor_is_422_not_500(
    plain_app: AsgiApp, upstream: ScriptedOpenAI, cursor: str
) -> None:
    async with plain_app.client(token=make_token("cursor-prober")) as client:
        reply = await client.get(f"/api/v1/conversations?cursor={quote(cursor)}")
    assert_error(reply, 422, "invalid_input")


@pytest.mark.parametrize(
    "subject",
    ["eve\ud800x", "eve\u0000pg", "\udfff", "eve\nnewline", "eve\x7f", "eve\x9f", "x" * 256, " "],
    ids=["lone-surrogate", "nul", "only-surrogate", "newline", "del", "c1-control", "too-long", "blank"],
)
async def test_s2_a_jwt_subject_that_cannot_be_stored_is_401_not_500(
    plain_app: AsgiApp, upstream: ScriptedOpenAI, subject: str
) -> None:
    async with plain_app.client(token=make_token(subject)) as client:
        chat = await post_chat(client, {"query": "What does salt do?"})
        listing = await client.get("/api/v1/conversations")
        read = await client.get("/api/v1/conversations/abcdefghijklmnopqrstuv")
    for reply in (chat, listing, read):
        assert_error(reply, 401, "unauthorized")
    assert upstream.requests == []


async def test_s2_an_unusual_but_storable_subject_still_works(plain_app: AsgiApp, upstream: ScriptedOpenAI) -> None:
    async with plain_app.client(token=make_token("évé 👩🏽‍🍳 " + "x" * 200)) as client:
        assert (await post_chat(client, {"query": "What does salt do?"})).status == 200
        assert len((await client.get("/api/v1/conversations")).json()["items"]) == 1


@pytest.mark.parametrize("weight", ["0.5", "1", True, False, None, [0.5], {"v": 1}])
async def test_i2_personality_weight_is_not_coerced(
    plain_app: AsgiApp, upstream: ScriptedOpenAI, weight: object
) -> None:
    async with plain_app.client() as client:
        reply = await post_chat(client, {"query": "What does salt do?", "personality_weight": weight})
    error = assert_error(reply, 422, "invalid_input")
    assert [d["field"] for d in error["detail"]] == ["personality_weight"]
    assert upstream.requests == []


async def test_i2_personality_weight_takes_json_numbers(plain_app: AsgiApp, upstream: ScriptedOpenAI) -> None:
    async with plain_app.client() as client:
        for weight in (0, 1, 0.5):
            reply = await post_chat(client, {"query": "What does salt do?", "personality_weight": weight})
            assert reply.status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/creators/%00",
        "/creators/hazel-marsh%00",
        "/creators/%ED%A0%80",
        "/api/v1/conversations?limit=%00",
        "/api/v1/conversations/%00/stop",
        "/%00",
        "/api/v1/%00",
    ],
)
async def test_i4_nul_anywhere_in_a_url_is_4xx_not_500(plain_app: AsgiApp, upstream: ScriptedOpenAI, path: str) -> None:
    async with plain_app.client(token=make_token("url-prober")) as client:
        replies = [await client.get(path), await client.post(path), await client.delete(path)]
    for reply in replies:
        assert 400 <= reply.status_code < 500, (path, reply.status_code, reply.text[:200])
