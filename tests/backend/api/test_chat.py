"""POST /api/v1/chat end to end on a live server: the wire format, history in context, and what gets stored."""

from __future__ import annotations

import uuid

from fastapi.middleware.cors import CORSMiddleware

from backend.api.middleware import BodySizeLimit, RequestContext
from backend.app import create_app
from backend.stream.events import Source
from tests.backend.api.fixtures import DEFAULT_TOKENS
from tests.backend.api.harness import EXTRACTIVE, UPSTREAM, LiveApp, make_token
from tests.backend.api.streams import assert_error, assert_turn_stored, post_chat
from tests.fakes import Script, ScriptedOpenAI

QUESTION = "How does Hazel keep her sourdough starter Bartholomew alive?"
FOLLOW_UP = "Why does that matter?"


async def test_happy_path_then_follow_up_in_context(main_app: LiveApp, upstream: ScriptedOpenAI, db) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    async with main_app.client(token=make_token(user)) as client:
        first = await post_chat(client, {"query": QUESTION, "creator": "hazel-marsh"})
        stream = first.stream
        assert first.headers["cache-control"] == "no-cache" and first.headers["x-accel-buffering"] == "no"
        sources = stream.events[0].data
        assert sources and all(set(s) == set(Source.model_fields) for s in sources)
        assert [s["index"] for s in sources] == list(range(1, len(sources) + 1))
        assert {s["creator"] for s in sources} == {"hazel-marsh"}
        assert stream.text == "".join(DEFAULT_TOKENS)  # tokens read together may share an event
        done = stream.done
        assert done["cascade_tier"] == UPSTREAM and done["finish_reason"] == "stop"
        assert done["conversation_id"] == first.conversation_id and done["search_query"] == QUESTION
        assert done["usage"]["completion_tokens"] == len(DEFAULT_TOKENS) and done["usage"]["prompt_tokens"] > 0
        await assert_turn_stored(db, first, question=QUESTION, owner_id=user)

        upstream.enqueue(Script(tokens=["Because", " it", " rises", "."]))
        second = await post_chat(
            client, {"query": FOLLOW_UP, "creator": "hazel-marsh", "conversation_id": first.conversation_id}
        )
        assert second.conversation_id == first.conversation_id
        assert second.stream.text == "Because it rises."
        # A follow-up ("that") is searched together with the question before it.
        assert second.stream.done["search_query"] == f"{QUESTION} {FOLLOW_UP}"
        await assert_turn_stored(db, second, question=FOLLOW_UP, owner_id=user)
        sent = upstream.requests[-1]["messages"]
        assert {"role": "user", "content": QUESTION} in sent
        assert {"role": "assistant", "content": "".join(DEFAULT_TOKENS)} in sent
        assert sent[-1]["role"] == "user" and sent[-1]["content"].endswith(f"Question: {FOLLOW_UP}")

        detail = (await client.get(f"/api/v1/conversations/{first.conversation_id}")).json()
        assert [(m["role"], m["content"], m["status"]) for m in detail["messages"]] == [
            ("user", QUESTION, "done"),
            ("assistant", "".join(DEFAULT_TOKENS), "done"),
            ("user", FOLLOW_UP, "done"),
            ("assistant", "Because it rises.", "done"),
        ]
        assert detail["creator"] == "hazel-marsh" and detail["messages"][1]["cascade_tier"] == UPSTREAM
        listed = (await client.get("/api/v1/conversations")).json()
        assert [item["id"] for item in listed["items"]] == [first.conversation_id]
    assert len(upstream.requests) == 2  # INV-5: one upstream call per turn


async def test_without_creator_searches_everyone(main_app: LiveApp, upstream: ScriptedOpenAI, db) -> None:
    async with main_app.client() as client:
        reply = await post_chat(client, {"query": "What temperature should dough ferment at?"})
    assert reply.stream.done["cascade_tier"] == UPSTREAM
    assert reply.stream.events[0].data  # something matched across creators
    await assert_turn_stored(db, reply, question="What temperature should dough ferment at?")


async def test_follow_up_must_keep_the_conversations_creator(main_app: LiveApp, upstream: ScriptedOpenAI) -> None:
    async with main_app.client() as client:
        first = await post_chat(client, {"query": QUESTION, "creator": "hazel-marsh"})
        assert first.stream.done
        other = await post_chat(
            client, {"query": FOLLOW_UP, "creator": "tomas-reyes", "conversation_id": first.conversation_id}
        )
    assert_error(other, 422, "invalid_input")
    assert len(upstream.requests) == 1


async def test_unknown_creator_is_404_before_any_stream(main_app: LiveApp, upstream: ScriptedOpenAI) -> None:
    async with main_app.client() as client:
        reply = await post_chat(client, {"query": QUESTION, "creator": "nobody-here"})
    body = assert_error(reply, 404, "unknown_creator")
    assert body["retryable"] is False and "nobody-here" in body["message"]
    assert upstream.requests == []


async def test_keepalive_comments_while_the_upstream_is_slow(main_app: LiveApp, upstream: ScriptedOpenAI, db) -> None:
    upstream.enqueue(Script(tokens=["Slow", " but", " sure"], first_token_delay=0.5, token_interval=0.4))
    async with main_app.client() as client:
        reply = await post_chat(client, {"query": QUESTION})
    assert b": keepalive" in reply.raw
    stream = reply.stream
    assert stream.comments and set(stream.comments) == {"keepalive"}
    assert stream.text == "Slow but sure" and stream.done["cascade_tier"] == UPSTREAM
    await assert_turn_stored(db, reply, question=QUESTION)


async def test_extractive_answers_when_it_is_the_only_tier_left(main_app: LiveApp, upstream: ScriptedOpenAI) -> None:
    # Sanity for the fallback rows: the extractive tier quotes the retrieved sources, with citations.
    upstream.enqueue(Script(status=503))
    async with main_app.client() as client:
        reply = await post_chat(client, {"query": QUESTION, "creator": "hazel-marsh"})
    stream = reply.stream
    assert stream.done["cascade_tier"] == EXTRACTIVE and "[1]" in stream.text


async def test_the_chat_route_is_described_in_the_openapi_schema(main_app: LiveApp) -> None:
    # A plain ASGI route (api/chat.py), which FastAPI would not describe by itself.
    async with main_app.client() as client:
        schema = (await client.get("/openapi.json")).json()
    chat = schema["paths"]["/api/v1/chat"]["post"]
    body = chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = schema["components"]["schemas"][body]
    assert set(fields["properties"]) == {"query", "creator", "conversation_id", "personality_weight", "site"}
    assert fields["required"] == ["query"] and fields["additionalProperties"] is False
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    assert {"404", "413", "422", "429"} <= set(chat["responses"])


def test_only_middleware_that_passes_bodies_through_sits_below_request_context(main_app: LiveApp) -> None:
    """A stream's body skips the middleware below RequestContext (middleware.BODY_SEND): each of them may look
    at the response's start, none may change a body message. A new one (compression, say) must sit above it."""
    classes = [entry.cls for entry in create_app(main_app.settings).user_middleware]
    assert classes[0] is RequestContext
    assert set(classes[1:]) <= {BodySizeLimit, CORSMiddleware}, classes


async def test_a_stream_from_an_allowed_origin_carries_the_middlewares_headers(
    main_app: LiveApp, upstream: ScriptedOpenAI
) -> None:
    origin = main_app.settings.server.cors_origins[0]
    async with main_app.client() as client:
        reply = await post_chat(client, {"query": QUESTION}, headers={"Origin": origin, "X-Request-ID": "widget-0001"})
    assert reply.status == 200
    assert reply.headers["access-control-allow-origin"] == origin
    assert "x-conversation-id" in reply.headers["access-control-expose-headers"].lower()
    assert reply.headers["x-request-id"] == "widget-0001"
    assert reply.stream.text == "".join(DEFAULT_TOKENS) and reply.stream.done["cascade_tier"] == UPSTREAM
