"""The MCP server at /mcp, through the official SDK's own client over real HTTP against a live uvicorn app
(docs/reliability.md, "Agents and traces (M)"): tools listed and called, answers stored as chat turns, errors an
agent can act on, credentials checked through the guard, limits with their retry time, and creators kept apart."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ReadResourceResult, TextResourceContents

from backend.app import create_app
from backend.curation import sites_store
from backend.curation.sites import new_site_key
from backend.mcp.tools import timestamped
from backend.settings import LimitSettings, McpSettings, Settings
from tests.backend.api.fixtures import LIMIT_CREATOR
from tests.backend.api.harness import (
    UPSTREAM,
    Backend,
    LiveApp,
    extractive_tier,
    live_app,
    make_token,
    new_peer,
    upstream_tier,
)
from tests.backend.api.streams import stored_turn
from tests.fakes import ScriptedOpenAI

HAZEL, INES = "hazel-marsh", "ines-calloway"
AUTH_FAILURES = 3
PER_IP = 2


@pytest.fixture(scope="module")
def mcp_app(
    backend: Backend, fake: ScriptedOpenAI, api_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApp]:
    """MCP on, credentials required; the scripted upstream first, the extractive tier behind it; no rate limits."""
    with live_app(
        template=api_index,
        workdir=tmp_path_factory.mktemp(f"mcp-{backend.name}"),
        backend=backend,
        tiers=[upstream_tier(fake), extractive_tier()],
        mcp=McpSettings(enabled=True),
    ) as app:
        yield app


@pytest.fixture(scope="module")
def limited_mcp_app(backend: Backend, api_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """Anonymous callers let in; PER_IP questions an hour per address, AUTH_FAILURES failed credentials."""
    limits = LimitSettings(
        user_per_hour=0, ip_per_hour=PER_IP, creator_per_hour=0, concurrent_streams_per_ip=64,
        auth_failures=AUTH_FAILURES,
    )  # fmt: skip
    with live_app(
        template=api_index,
        workdir=tmp_path_factory.mktemp(f"mcp-limited-{backend.name}"),
        backend=backend,
        tiers=[extractive_tier()],
        limits=limits,
        mcp=McpSettings(enabled=True, allow_anonymous=True),
    ) as app:
        yield app


@asynccontextmanager
async def mcp_client(app: LiveApp, *, token: str | None = None, peer: str | None = None) -> AsyncIterator[Client]:
    """The SDK's client on its Streamable HTTP transport, from an address of its own, with `token` as bearer."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(
        headers=headers,
        transport=httpx2.AsyncHTTPTransport(local_address=peer or new_peer()),
        timeout=httpx2.Timeout(30, read=60),
    )
    async with http, Client(streamable_http_client(f"{app.base_url}/mcp", http_client=http), cache=None) as client:
        yield client


def payload(result: CallToolResult) -> dict[str, Any]:
    """A tool's JSON, read from its text content (what an agent's model reads) and checked against the structured
    copy (what a program reads)."""
    assert len(result.content) == 1 and result.content[0].type == "text"
    body = json.loads(result.content[0].text)
    assert result.structured_content == body
    return body


def text_of(read: ReadResourceResult) -> str:
    [contents] = read.contents
    assert isinstance(contents, TextResourceContents) and contents.mime_type == "application/json"
    return contents.text


def tool_error(result: CallToolResult, code: str) -> dict[str, Any]:
    assert result.is_error, result
    error = payload(result)["error"]
    assert error["code"] == code and error["message"], error
    return error


async def site_key(app: LiveApp, name: str, *, creators: list[str], daily_limit: int | None) -> str:
    key, key_hash = new_site_key(name)
    async with app.db() as db:
        await sites_store.add_site(db, name=name, origins=["https://blog.example"], creators=creators,
                                   daily_limit=daily_limit)  # fmt: skip
        assert await sites_store.set_site_key(db, name=name, key_hash=key_hash)
    return key


def unique(prefix: str) -> str:
    return f"{prefix}-{new_peer().replace('.', '-')}"


async def test_m5_tools_and_their_schemas_are_listed(mcp_app: LiveApp) -> None:
    async with mcp_client(mcp_app, token=make_token("agent-a")) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(listed) == {"search_knowledge", "ask", "list_creators"}
    ask = listed["ask"].input_schema
    assert ask["required"] == ["question"] and set(ask["properties"]) == {"question", "creator", "conversation_id"}
    assert set(listed["search_knowledge"].input_schema["properties"]) == {"query", "creator", "k"}
    search_hints, ask_hints = listed["search_knowledge"].annotations, listed["ask"].annotations
    assert search_hints is not None and search_hints.read_only_hint is True
    assert ask_hints is not None and ask_hints.read_only_hint is False  # it stores a conversation turn


async def test_m5_search_returns_titled_linked_snippets_of_the_named_creator(mcp_app: LiveApp) -> None:
    async with mcp_client(mcp_app, token=make_token("agent-a")) as client:
        query = "village hall talk on a wet Thursday about bread"
        result = await client.call_tool("search_knowledge", {"query": query, "creator": HAZEL})
        found = payload(result)
        capped = payload(await client.call_tool("search_knowledge", {"query": "salt", "k": 2}))
    assert not result.is_error
    hits = found["hits"]
    assert 1 <= len(hits) <= 5 and [hit["rank"] for hit in hits] == list(range(1, len(hits) + 1))
    for hit in hits:
        assert hit["creator"] == HAZEL and hit["title"] and hit["snippet"] and "url" in hit
    # The talk transcript is found, with the moment the passage is said.
    assert any("at" in hit for hit in hits), hits
    assert len(capped["hits"]) == 2


def test_m5_transcript_urls_point_at_the_moment() -> None:
    assert timestamped("https://video.example/watch?v=x", 75.9) == "https://video.example/watch?v=x#t=75"
    assert timestamped("https://video.example/talk#intro", 3) == "https://video.example/talk#t=3"
    assert timestamped("https://blog.example/post", None) == "https://blog.example/post"
    assert timestamped(None, 12.0) is None


async def test_m5_ask_answers_with_citations_verdicts_and_tier_stored_as_a_chat_turn(
    mcp_app: LiveApp, upstream: ScriptedOpenAI
) -> None:
    user = unique("agent-user")
    async with mcp_client(mcp_app, token=make_token(user)) as client:
        first = payload(await client.call_tool("ask", {"question": "Who is Bartholomew?", "creator": HAZEL}))
        again = payload(
            await client.call_tool(
                "ask", {"question": "How old is he?", "creator": HAZEL, "conversation_id": first["conversation_id"]}
            )
        )
    assert first["answer"] == "Bartholomew is the starter [1]." and first["tier"] == UPSTREAM
    assert first["finish_reason"] == "stop" and first["skipped"] == [] and first["trace_id"] is None
    assert first["sources"] and all(source["creator"] == HAZEL for source in first["sources"])
    assert first["citations"], first
    for claim in first["citations"]:
        assert claim["text"] and isinstance(claim["supported"], bool) and claim["sources"] == [1]
    assert first["unsupported_claims"] == sum(1 for c in first["citations"] if c["claim"] and not c["supported"])
    # The same turn path as the chat API: the second question saw the first turn as history, and both are stored,
    # owned by the JWT's user.
    assert again["conversation_id"] == first["conversation_id"]
    history = {"role": "assistant", "content": first["answer"]}
    assert history in upstream.requests[-1]["messages"]
    async with mcp_app.db() as db:
        detail = await stored_turn(db, first["conversation_id"], owner_id=user)
    assert [(m.role, m.status) for m in detail.messages] == [("user", "done"), ("assistant", "done")] * 2
    assert detail.messages[0].content == "Who is Bartholomew?" and detail.messages[1].content == first["answer"]
    assert detail.messages[1].id == first["message_id"] and detail.messages[1].cascade_tier == UPSTREAM
    async with mcp_app.client(token=make_token("someone-else")) as other:  # S3: not another user's to read
        assert (await other.get(f"/api/v1/conversations/{first['conversation_id']}")).status_code == 404


async def test_m5_creators_and_their_resources_are_listed_and_read(mcp_app: LiveApp) -> None:
    async with mcp_client(mcp_app, token=make_token("agent-a")) as client:
        creators = payload(await client.call_tool("list_creators", {}))["creators"]
        listed = {str(resource.uri) for resource in (await client.list_resources()).resources}
        profile = json.loads(text_of(await client.read_resource(f"lorechat://creators/{HAZEL}")))
        documents = json.loads(text_of(await client.read_resource(f"lorechat://creators/{HAZEL}/documents")))
        templates = (await client.list_resource_templates()).resource_templates
    slugs = [creator["slug"] for creator in creators]
    assert {HAZEL, INES, "tomas-reyes"} <= set(slugs) and slugs == sorted(slugs)
    assert {f"lorechat://creators/{HAZEL}", f"lorechat://creators/{HAZEL}/documents"} <= listed
    assert profile["name"] == "Hazel Marsh" and profile["documents"] == len(documents["documents"]) > 0
    assert any(doc["kind"] == "transcript" and "duration" in doc for doc in documents["documents"])
    assert {template.uri_template for template in templates} == {
        "lorechat://creators/{slug}",
        "lorechat://creators/{slug}/documents",
    }


async def test_m4_bad_input_and_unknown_creators_are_clear_errors(mcp_app: LiveApp) -> None:
    async with mcp_client(mcp_app, token=make_token("agent-a")) as client:
        empty = tool_error(await client.call_tool("ask", {"question": "  \x00 "}), "invalid_input")
        missing = tool_error(await client.call_tool("search_knowledge", {}), "invalid_input")
        too_many = tool_error(await client.call_tool("search_knowledge", {"query": "salt", "k": 0}), "invalid_input")
        typed = tool_error(await client.call_tool("search_knowledge", {"query": "salt", "k": "3"}), "invalid_input")
        extra = tool_error(await client.call_tool("list_creators", {"sql": "DROP"}), "invalid_input")
        unknown = tool_error(await client.call_tool("ask", {"question": "Hi?", "creator": "nobody"}), "unknown_creator")
        with pytest.raises(MCPError) as no_tool:
            await client.call_tool("delete_everything", {})
        with pytest.raises(MCPError) as no_resource:
            await client.read_resource("lorechat://creators/nobody")
    assert "question" in empty["message"] and "query" in missing["message"] and "k" in too_many["message"]
    assert "k" in typed["message"] and "sql" in extra["message"]
    assert unknown["retryable"] is False and "nobody" in unknown["message"]
    assert no_tool.value.error.code == -32602 and "delete_everything" in no_tool.value.error.message
    assert no_resource.value.error.code == -32602


async def test_m1_credentials_are_required_and_checked(mcp_app: LiveApp) -> None:
    """No credential: 401 with WWW-Authenticate, before the SDK reads the request; a bad JWT or site key: 401."""
    init = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = {"Accept": "application/json, text/event-stream"}
    async with mcp_app.client() as http:
        anonymous = await http.post("/mcp", json=init, headers=accept)
        forged = await http.post("/mcp", json=init, headers={**accept, "Authorization": "Bearer lck_blog_guess"})
        expired = await http.post(
            "/mcp", json=init, headers={**accept, "Authorization": f"Bearer {make_token('a', expires_in=-600)}"}
        )
    for reply in (anonymous, forged, expired):
        assert reply.status_code == 401 and reply.json()["code"] == "unauthorized"
        assert reply.headers["www-authenticate"] == "Bearer"
    with pytest.raises(Exception):  # noqa: B017 - the SDK's client cannot even discover the server
        async with mcp_client(mcp_app) as client:
            await client.list_tools()


async def test_m1_guessing_credentials_is_locked_out_before_they_are_checked(limited_mcp_app: LiveApp) -> None:
    """S6 for /mcp: past limits.auth_failures failed checks, every credential from that address gets 429 with
    Retry-After, the right one included, so 429 never tells a right guess from a wrong one."""
    peer = new_peer()
    key = await site_key(limited_mcp_app, unique("guarded"), creators=[], daily_limit=None)
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    async with limited_mcp_app.client(peer=peer) as http:
        for _ in range(AUTH_FAILURES):
            guess = await http.post("/mcp", json=body, headers={**headers, "Authorization": f"Bearer {wrong}"})
            assert guess.status_code == 401
        right = await http.post("/mcp", json=body, headers={**headers, "Authorization": f"Bearer {key}"})
        jwt = await http.post("/mcp", json=body, headers={**headers, "Authorization": f"Bearer {make_token('u')}"})
    for locked in (right, jwt):
        assert locked.status_code == 429 and locked.json()["code"] == "rate_limited"
        assert int(locked.headers["retry-after"]) >= 1
    async with mcp_client(limited_mcp_app, token=key) as client:  # another address is not locked out
        assert {tool.name for tool in (await client.list_tools()).tools} >= {"ask"}


async def test_m2_rate_limits_come_back_with_their_retry_time(limited_mcp_app: LiveApp) -> None:
    async with mcp_client(limited_mcp_app) as client:  # anonymous: allowed on this app, limited per address
        for _ in range(PER_IP):
            assert not (await client.call_tool("search_knowledge", {"query": "rye", "creator": LIMIT_CREATOR})).is_error
        searched = tool_error(await client.call_tool("search_knowledge", {"query": "rye"}), "rate_limited")
        asked = tool_error(await client.call_tool("ask", {"question": "Which flour ferments faster?"}), "rate_limited")
        still = payload(await client.call_tool("list_creators", {}))  # reading the catalog is not a question
    for error in (searched, asked):
        assert error["retryable"] is True and isinstance(error["retry_after"], int) and error["retry_after"] >= 1
    assert still["creators"]


async def test_m3_a_site_key_sees_only_its_creators_within_its_budget(
    mcp_app: LiveApp, upstream: ScriptedOpenAI
) -> None:
    """S4 for agents: a site key limited to one creator lists, reads, searches and asks only that creator (canary:
    another creator's made-up term never comes back), and its daily budget ends with a retry time."""
    key = await site_key(mcp_app, unique("hazel-blog"), creators=[HAZEL], daily_limit=2)
    async with mcp_client(mcp_app, token=key) as client:
        creators = payload(await client.call_tool("list_creators", {}))["creators"]
        listed = {str(resource.uri) for resource in (await client.list_resources()).resources}
        with pytest.raises(MCPError) as hidden:
            await client.read_resource(f"lorechat://creators/{INES}")
        other = tool_error(await client.call_tool("search_knowledge", {"query": "Vessen index", "creator": INES}),
                           "forbidden")  # fmt: skip
        # No creator named: the site's only creator, never the canary's owner.
        own = payload(await client.call_tool("search_knowledge", {"query": "Vessen index"}))
        answer = payload(await client.call_tool("ask", {"question": "What is the Vessen index?"}))
        spent = tool_error(await client.call_tool("ask", {"question": "And the Quillfield fold?"}),
                           "site_budget_exhausted")  # fmt: skip
    assert [creator["slug"] for creator in creators] == [HAZEL]
    assert listed == {f"lorechat://creators/{HAZEL}", f"lorechat://creators/{HAZEL}/documents"}
    assert hidden.value.error.code == -32602 and INES not in json.dumps(other)
    assert own["hits"] and all(hit["creator"] == HAZEL for hit in own["hits"])
    assert "vessen" not in json.dumps(own).lower() and "vessen index" not in json.dumps(answer["sources"]).lower()
    assert all(source["creator"] == HAZEL for source in answer["sources"])
    assert spent["retry_after"] >= 1 and spent["retryable"] is True


def test_m5_mcp_is_off_unless_enabled(tmp_path: Path) -> None:
    def paths(settings: Settings) -> set[str]:
        return {getattr(route, "path", "") for route in create_app(settings).routes}

    assert "/mcp" not in paths(Settings(data_dir=tmp_path, mcp=McpSettings()))
    assert "/mcp" in paths(Settings(data_dir=tmp_path, mcp=McpSettings(enabled=True)))
