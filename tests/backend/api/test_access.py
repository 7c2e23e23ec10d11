"""Who may do what (S2, S3): bad tokens are 401, other people's conversations do not exist."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from tests.backend.api.harness import AsgiApp, make_token
from tests.backend.api.streams import assert_error, assert_turn_stored, post_chat
from tests.fakes import ScriptedOpenAI

# Plain request/response checks: the app in process (ASGI), in the module's event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")

QUESTION = "What is the Quillfield fold?"


def _tampered() -> str:
    header, payload, signature = make_token("mallory").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


BAD_TOKENS = {
    "alg-none": lambda: make_token("mallory", algorithm="none"),
    "expired": lambda: make_token("mallory", expires_in=-60),
    "wrong-audience": lambda: make_token("mallory", audience="someone-else"),
    "no-audience": lambda: make_token("mallory", audience=None),
    "wrong-secret": lambda: make_token("mallory", secret="not-the-secret-but-just-as-long-as-it"),
    "tampered": _tampered,
    "garbage": lambda: "not.a.jwt",
}


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
async def test_s2_bad_tokens_are_401(plain_app: AsgiApp, upstream: ScriptedOpenAI, kind: str) -> None:
    async with plain_app.client(token=BAD_TOKENS[kind]()) as client:
        listed = await client.get("/api/v1/conversations")
        chat = await post_chat(client, {"query": QUESTION})
    for reply in (listed, chat):
        body = assert_error(reply, 401, "unauthorized")
        assert body["message"] == "Invalid or expired token" and reply.headers["www-authenticate"] == "Bearer"
    assert upstream.requests == []


async def test_s2_non_bearer_scheme_is_401(plain_app: AsgiApp) -> None:
    async with plain_app.client() as client:
        reply = await client.get("/api/v1/conversations", headers={"Authorization": "Basic YWxhZGRpbjpvcGVu"})
    assert_error(reply, 401, "unauthorized")


async def test_s3_someone_elses_conversation_does_not_exist(
    plain_app: AsgiApp, upstream: ScriptedOpenAI, plain_db
) -> None:
    alice, bob = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    async with plain_app.client(token=make_token(alice)) as as_alice:
        reply = await post_chat(as_alice, {"query": QUESTION})
        await assert_turn_stored(plain_db, reply, question=QUESTION, owner_id=alice)
        conversation = reply.conversation_id
        assert (await as_alice.get(f"/api/v1/conversations/{conversation}")).status_code == 200
    calls = len(upstream.requests)

    async with plain_app.client(token=make_token(bob)) as as_bob, plain_app.client() as anonymous:
        absent = assert_error(await as_bob.get("/api/v1/conversations/AAAAAAAAAAAAAAAAAAAAAA"), 404, "not_found")
        for client in (as_bob, anonymous):
            attempts = [
                await client.get(f"/api/v1/conversations/{conversation}"),
                await client.delete(f"/api/v1/conversations/{conversation}"),
                await client.post(f"/api/v1/conversations/{conversation}/stop"),
            ]
            for attempt in attempts:
                body = assert_error(attempt, 404, "not_found")
                assert {**body, "request_id": None} == {**absent, "request_id": None}  # no existence oracle
            follow_up = await post_chat(client, {"query": "And then?", "conversation_id": conversation})
            assert_error(follow_up, 404, "not_found")
        assert (await as_bob.get("/api/v1/conversations")).json()["items"] == []
        assert_error(await anonymous.get("/api/v1/conversations"), 401, "unauthorized")
    assert len(upstream.requests) == calls  # refused before any model was asked


async def test_s3_anonymous_conversation_by_id_and_soft_delete(
    plain_app: AsgiApp, upstream: ScriptedOpenAI, plain_db
) -> None:
    async with plain_app.client() as first_visit:
        reply = await post_chat(first_visit, {"query": QUESTION})
        await assert_turn_stored(plain_db, reply, question=QUESTION)
    conversation = reply.conversation_id
    assert len(conversation) >= 20  # unguessable ids

    async with plain_app.client() as later_visit:  # another connection, another address: only the id matters
        detail = await later_visit.get(f"/api/v1/conversations/{conversation}")
        assert detail.status_code == 200 and [m["role"] for m in detail.json()["messages"]] == ["user", "assistant"]
        deleted = await later_visit.delete(f"/api/v1/conversations/{conversation}")
        assert deleted.status_code == 204 and deleted.content == b""
        assert_error(await later_visit.get(f"/api/v1/conversations/{conversation}"), 404, "not_found")
        assert_error(await later_visit.delete(f"/api/v1/conversations/{conversation}"), 404, "not_found")
        follow_up = await post_chat(later_visit, {"query": "More?", "conversation_id": conversation})
        assert_error(follow_up, 404, "not_found")
