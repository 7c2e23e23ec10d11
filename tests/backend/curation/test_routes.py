"""The curator loop over HTTP (in process, both deployments): feedback, sites on the chat route, and the
dashboard's login, CSRF and exports, against the real app on real PostgreSQL/Redis or SQLite."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from backend.curation import sites_store
from backend.settings import LimitSettings
from backend.storage.repository import Sessions
from tests.backend.api.harness import AsgiApp, Backend, asgi_app, extractive_tier, make_token, upstream_tier
from tests.backend.api.streams import assert_error, assert_turn_stored, post_chat
from tests.fakes import ScriptedOpenAI

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN_TOKEN = "curator-token-" + "x" * 24
CREATOR = "hazel-marsh"
QUESTION = "What is the Quillfield fold?"
ORIGIN = "https://blog.example"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def app(
    backend: Backend, fake: ScriptedOpenAI, api_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AsgiApp]:
    limits = LimitSettings(user_per_hour=0, ip_per_hour=0, creator_per_hour=0, feedback_per_hour=3)
    async with asgi_app(
        template=api_index,
        workdir=tmp_path_factory.mktemp(f"curator-{backend.name}"),
        backend=backend,
        tiers=[upstream_tier(fake), extractive_tier()],
        limits=limits,
        admin_token=ADMIN_TOKEN,
    ) as app:
        yield app


@pytest_asyncio.fixture(loop_scope="module")
async def db(app: AsgiApp) -> AsyncIterator[Sessions]:
    async with app.db() as sessions:
        yield sessions


async def _answer(client: httpx.AsyncClient, db: Sessions, body: dict[str, object] | None = None) -> str:
    reply = await post_chat(client, body or {"query": QUESTION, "creator": CREATOR})
    answer = await assert_turn_stored(db, reply, question=str((body or {"query": QUESTION})["query"]))
    return answer.id


# ---- feedback -------------------------------------------------------------------------------------------
async def test_feedback_replaces_and_follows_conversation_ownership(
    app: AsgiApp, db: Sessions, upstream: ScriptedOpenAI
) -> None:
    # Names of this test's own: the feedback budget is per user in Redis, which outlives a run.
    alice, bob = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    async with app.client(token=make_token(alice)) as as_alice:
        reply = await post_chat(as_alice, {"query": QUESTION, "creator": CREATOR})
        answer = await assert_turn_stored(db, reply, question=QUESTION, owner_id=alice)
        up = await as_alice.post(f"/api/v1/messages/{answer.id}/feedback", json={"rating": "up"})
        assert up.status_code == 200 and up.json()["rating"] == "up" and up.json()["comment"] is None
        down = await as_alice.post(
            f"/api/v1/messages/{answer.id}/feedback", json={"rating": "down", "comment": "  Wrong fold.\x07 "}
        )
        assert down.status_code == 200 and down.json() | {"updated_at": None} == {
            "message_id": answer.id, "rating": "down", "comment": "Wrong fold.", "updated_at": None,
        }  # fmt: skip
    async with app.client(token=make_token(bob)) as as_bob, app.client() as anonymous:
        for client in (as_bob, anonymous):
            assert_error(
                await client.post(f"/api/v1/messages/{answer.id}/feedback", json={"rating": "up"}), 404, "not_found"
            )
        question = reply.conversation_id  # not a message id at all
        assert_error(
            await anonymous.post(f"/api/v1/messages/{question}/feedback", json={"rating": "up"}), 404, "not_found"
        )


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"rating": "meh"},
        {"rating": 1},
        {"rating": "up", "comment": "x" * 501},
        {"rating": "up", "comment": 5},
        {"rating": "up", "extra": True},
        ["up"],
    ],
)
async def test_feedback_is_strictly_validated(
    app: AsgiApp, db: Sessions, upstream: ScriptedOpenAI, body: object
) -> None:
    async with app.client() as client:
        answer = await _answer(client, db)
        assert_error(await client.post(f"/api/v1/messages/{answer}/feedback", json=body), 422, "invalid_input")


async def test_only_a_finished_answer_takes_feedback(app: AsgiApp, db: Sessions, upstream: ScriptedOpenAI) -> None:
    async with app.client() as client:
        reply = await post_chat(client, {"query": QUESTION, "creator": CREATOR})
        await assert_turn_stored(db, reply, question=QUESTION)
        detail = await client.get(f"/api/v1/conversations/{reply.conversation_id}")
        question_id = detail.json()["messages"][0]["id"]
        body = assert_error(
            await client.post(f"/api/v1/messages/{question_id}/feedback", json={"rating": "up"}), 422, "invalid_input"
        )
        assert "finished answer" in body["message"]


async def test_feedback_has_its_own_rate_limit(app: AsgiApp, db: Sessions, upstream: ScriptedOpenAI) -> None:
    async with app.client() as client:
        answer = await _answer(client, db)
        statuses = [
            (await client.post(f"/api/v1/messages/{answer}/feedback", json={"rating": "up"})).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        refused = await client.post(f"/api/v1/messages/{answer}/feedback", json={"rating": "up"})
        assert_error(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) > 0
        # Questions are another budget: chatting still works.
        assert (await post_chat(client, {"query": QUESTION})).status == 200


# ---- sites ----------------------------------------------------------------------------------------------
async def test_a_site_is_held_to_its_origin_creators_and_budget(
    app: AsgiApp, db: Sessions, upstream: ScriptedOpenAI
) -> None:
    name = f"blog-{uuid.uuid4().hex[:6]}"
    await sites_store.add_site(db, name=name, origins=[ORIGIN], creators=[CREATOR], daily_limit=2)
    body = {"query": QUESTION, "creator": CREATOR, "site": name}
    async with app.client() as client:
        for origin in (None, "https://evil.example", "null", "https://blog.example.evil.example"):
            headers = {"Origin": origin} if origin else {}
            assert_error(await post_chat(client, body, headers=headers), 403, "forbidden")
        other_creator = {**body, "creator": "tomas-reyes"}
        assert_error(await post_chat(client, other_creator, headers={"Origin": ORIGIN}), 403, "forbidden")
        unscoped = {"query": QUESTION, "site": name}
        assert_error(await post_chat(client, unscoped, headers={"Origin": ORIGIN}), 403, "forbidden")
        unknown = {**body, "site": "no-such-site"}
        assert_error(await post_chat(client, unknown, headers={"Origin": ORIGIN}), 403, "forbidden")
        calls = len(upstream.requests)
        assert calls == 0  # nothing refused reached a model
        for _ in range(2):
            reply = await post_chat(client, body, headers={"Origin": "https://BLOG.example:443"})
            await assert_turn_stored(db, reply, question=QUESTION)
        over = await post_chat(client, body, headers={"Origin": ORIGIN})
        error = assert_error(over, 429, "site_budget_exhausted")
        assert 0 < int(over.headers["retry-after"]) <= 86_400 and error["retry_after"] == int(
            over.headers["retry-after"]
        )
    [site] = [s for s in await sites_store.list_sites(db) if s.name == name]
    assert (site.requests_today, site.refused_today) == (2, 1)


async def test_requests_without_a_site_can_be_refused(app: AsgiApp, db: Sessions, upstream: ScriptedOpenAI) -> None:
    name = f"shop-{uuid.uuid4().hex[:6]}"
    await sites_store.add_site(db, name=name, origins=[ORIGIN], creators=[], daily_limit=None)
    async with app.client() as client:
        assert (await post_chat(client, {"query": QUESTION})).status == 200  # today's behaviour by default
        app.settings.sites.require_site = True
        try:
            assert_error(await post_chat(client, {"query": QUESTION}), 403, "forbidden")
            reply = await post_chat(client, {"query": QUESTION, "site": name}, headers={"Origin": ORIGIN})
            assert reply.status == 200
        finally:
            app.settings.sites.require_site = False
        assert_error(await post_chat(client, {"query": QUESTION, "site": "Bad Name"}), 422, "invalid_input")


# ---- the dashboard --------------------------------------------------------------------------------------
ADMIN_GETS = [
    "/admin",
    *(f"/admin/export/{t}.{f}" for t in ("gaps", "sites", "feedback", "creators") for f in ("csv", "json")),
]


async def _sign_in(client: httpx.AsyncClient) -> None:
    reply = await client.post("/admin/login", data={"token": ADMIN_TOKEN})
    assert reply.status_code == 303 and reply.headers["location"] == "/admin"
    cookie = reply.headers["set-cookie"]
    for flag in ("HttpOnly", "SameSite=strict", "Path=/admin", "Max-Age="):
        assert flag.lower() in cookie.lower(), cookie


async def test_an_anonymous_visitor_gets_nothing_from_admin(app: AsgiApp) -> None:
    async with app.client() as client:
        for path in ADMIN_GETS:
            reply = await client.get(path)
            assert reply.status_code in (303, 401), (path, reply.status_code)
            assert reply.status_code == 401 or reply.headers["location"] == "/admin/login"
            assert "hazel" not in reply.text.lower() and "quillfield" not in reply.text.lower()
        for path in ("/admin/gaps/AAAAAAAAAAAAAAAAAAAAAA/resolve", "/admin/logout"):
            assert_error(await client.post(path, data={"csrf": "x"}), 401, "unauthorized")
        wrong = await client.post("/admin/login", data={"token": "guess"})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        forged = {"Cookie": "lorechat_admin=9999999999.nonce.0000"}
        assert (await client.get("/admin", headers=forged)).status_code == 303
        login = await client.get("/admin/login")
        assert login.status_code == 200 and "frame-ancestors 'none'" in login.headers["content-security-policy"]


async def test_a_thumbs_down_reaches_the_inbox_and_every_table_exports(
    app: AsgiApp, db: Sessions, upstream: ScriptedOpenAI
) -> None:
    question = f"How long does the Quillfield dough rest, batch {uuid.uuid4().hex[:6]}?"
    async with app.client() as visitor:
        answer = await _answer(visitor, db, {"query": question, "creator": CREATOR})
        rated = await visitor.post(f"/api/v1/messages/{answer}/feedback", json={"rating": "down"})
        assert rated.status_code == 200
    async with app.client() as admin:
        await _sign_in(admin)
        page = await admin.get("/admin")
        assert page.status_code == 200 and question in page.text
        gaps = (await admin.get("/admin/export/gaps.json")).json()
        [topic] = [t for t in gaps if question in t["examples"]]
        assert topic["creator"] == CREATOR and "thumbs_down 1" in topic["signals"]
        feedback = (await admin.get("/admin/export/feedback.json")).json()
        assert any(row["creator"] == CREATOR and row["down"] >= 1 for row in feedback)
        for name in ("creators", "ingest_runs", "questions_per_day", "answers_per_tier", "ttft", "sites"):
            as_json = await admin.get(f"/admin/export/{name}.json")
            as_csv = await admin.get(f"/admin/export/{name}.csv")
            assert as_json.status_code == 200 and isinstance(json.loads(as_json.text), list)
            assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
        assert any(row["creator"] == CREATOR for row in (await admin.get("/admin/export/creators.json")).json())
        # Every answered turn stores its time to first token, so the dashboard has a p50 to show.
        [ttft] = (await admin.get("/admin/export/ttft.json")).json()
        assert isinstance(ttft["p50_ms"], int) and ttft["p50_ms"] >= 0, ttft
        # Resolving needs the session's CSRF token and the same origin.
        topic_id = topic["id"]
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        resolve = f"/admin/gaps/{topic_id}/resolve"
        assert_error(await admin.post(resolve, data={"csrf": "forged"}), 403, "forbidden")
        cross_site = await admin.post(resolve, data={"csrf": csrf}, headers={"Origin": "https://evil.example"})
        assert_error(cross_site, 403, "forbidden")
        done = await admin.post(resolve, data={"csrf": csrf})
        assert done.status_code == 303 and done.headers["location"] == "/admin#gaps"
        assert topic_id not in {t["id"] for t in (await admin.get("/admin/export/gaps.json")).json()}
        signed_out = await admin.post("/admin/logout", data={"csrf": csrf})
        assert signed_out.status_code == 303 and 'lorechat_admin=""' in signed_out.headers["set-cookie"]
