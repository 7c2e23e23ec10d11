"""S6: every credential check (dashboard sign-in and session, the admin bearer token, JWTs) is rate-limited per
address before it is evaluated; I11: malformed forms and ids never reach a 500. Both deployments: the window in
Redis (shared by replicas) and in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from backend.settings import LimitSettings, ServerSettings
from tests.backend.api.harness import AsgiApp, Backend, asgi_app, extractive_tier, make_token, new_peer
from tests.backend.api.streams import assert_error, post_chat

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN_TOKEN = "curator-token-" + "s6" * 12
FAILURES = 4


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def app(backend: Backend, api_index: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AsgiApp]:
    limits = LimitSettings(
        user_per_hour=0, ip_per_hour=0, creator_per_hour=0, auth_failures=FAILURES, auth_window_seconds=600
    )
    async with asgi_app(
        template=api_index,
        workdir=tmp_path_factory.mktemp(f"credentials-{backend.name}"),
        backend=backend,
        tiers=[extractive_tier()],
        limits=limits,
        admin_token=ADMIN_TOKEN,
        # The default body bound (16 KiB) holds JSON nested 7,000 deep: I11 needs that much room.
        server=ServerSettings(keepalive_seconds=0.2, send_timeout_seconds=5, max_body_bytes=32_768),
    ) as app:
        yield app


async def _login(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/admin/login", data={"token": token})


async def test_s6_sign_in_is_refused_before_the_token_is_checked(app: AsgiApp) -> None:
    peer = new_peer()
    async with app.client(peer=peer) as client:
        for _ in range(FAILURES):
            assert (await _login(client, "wrong guess")).status_code == 401
        for guess in ("another guess", ADMIN_TOKEN):  # the right token too: 429 tells nothing of the guess
            refused = await _login(client, guess)
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1, refused.text
            assert "set-cookie" not in refused.headers
    async with app.client() as elsewhere:  # another address is not locked out
        assert (await _login(elsewhere, ADMIN_TOKEN)).status_code == 303


async def test_s6_a_right_sign_in_spends_nothing(app: AsgiApp) -> None:
    async with app.client() as client:
        for _ in range(FAILURES * 3):
            assert (await _login(client, ADMIN_TOKEN)).status_code == 303
        assert (await _login(client, "wrong")).status_code == 401


async def test_s6_concurrent_guesses_get_exactly_the_allowed_checks(app: AsgiApp) -> None:
    async with app.client() as client:
        replies = await asyncio.gather(*(_login(client, f"guess-{i}") for i in range(20)))
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses == [401] * FAILURES + [429] * (20 - FAILURES)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/admin/export/gaps.json", None),
        ("GET", "/admin", None),
        ("POST", "/api/v1/admin/ingest", {"paths": ["/nonexistent"], "dry_run": True}),
    ],
)
async def test_s6_the_admin_bearer_token_is_limited_too(
    app: AsgiApp, method: str, path: str, body: dict[str, object] | None
) -> None:
    async with app.client() as client:

        async def call(token: str) -> httpx.Response:
            return await client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})

        for _ in range(FAILURES):
            assert (await call("wrong")).status_code in (303, 401)  # /admin sends a browser to the sign-in form
        for token in ("wrong", ADMIN_TOKEN):
            assert_error(await call(token), 429, "rate_limited")


async def test_s6_forged_session_cookies_count_as_failures(app: AsgiApp) -> None:
    async with app.client() as client:
        for n in range(FAILURES):
            reply = await client.get("/admin", headers={"Cookie": f"lorechat_admin=9999999999.nonce{n}.0000"})
            assert reply.status_code == 303
        assert_error(
            await client.get("/admin/export/gaps.json", headers={"Cookie": "lorechat_admin=1.x.y"}), 429, "rate_limited"
        )


async def test_s6_bad_jwts_lock_the_address_out_before_decoding(app: AsgiApp) -> None:
    peer = new_peer()
    async with app.client(peer=peer, token="not.a.jwt") as bad:
        for _ in range(FAILURES):
            assert_error(await bad.get("/api/v1/conversations"), 401, "unauthorized")
        assert_error(await bad.get("/api/v1/conversations"), 429, "rate_limited")
    async with app.client(peer=peer, token=make_token("alice-s6")) as good:
        assert_error(await post_chat(good, {"query": "What is the starter called?"}), 429, "rate_limited")
    async with app.client(token=make_token("alice-s6")) as good_elsewhere:
        assert (await good_elsewhere.get("/api/v1/conversations")).status_code == 200


@pytest.mark.parametrize(
    "form",
    [
        "&".join(f"f{i}=1" for i in range(30)) + f"&token={ADMIN_TOKEN}",
        "token=x" + "&" * 60,
        "&".join(["token=x"] * 50),
    ],
)
async def test_i11_a_form_with_too_many_fields_is_422(app: AsgiApp, form: str) -> None:
    async with app.client() as client:
        reply = await client.post(
            "/admin/login", content=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
    assert_error(reply, 422, "invalid_input")


async def test_i11_a_sign_in_form_with_a_few_empty_fields_still_works(app: AsgiApp) -> None:
    async with app.client() as client:
        reply = await client.post(
            "/admin/login",
            content=f"token={ADMIN_TOKEN}" + "&" * 12,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert reply.status_code == 303


@pytest.mark.parametrize("bad_id", ["%00", "AAAAAAAA%00AAAAAAAA", "%ED%A0%80AAAAAAAA", "A" * 5000, "..", "%FF%FE-id"])
async def test_i11_a_malformed_gap_id_is_404_before_any_lookup(app: AsgiApp, bad_id: str) -> None:
    async with app.client() as client:
        reply = await _login(client, ADMIN_TOKEN)
        assert reply.status_code == 303
        page = await client.get("/admin")
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        resolved = await client.post(f"/admin/gaps/{bad_id}/resolve", data={"csrf": csrf})
    assert resolved.status_code in (404, 405), resolved.text
    if resolved.status_code == 404:
        assert_error(resolved, 404, "not_found")


@pytest.mark.parametrize("bad_id", ["%00", "AAAAAAAA%00AAAAAAAA", "A" * 5000, "%FF%FE-id-and-more"])
async def test_i11_malformed_ids_in_visitor_paths_are_404(app: AsgiApp, bad_id: str) -> None:
    async with app.client() as client:
        for method, path in (
            ("GET", f"/api/v1/conversations/{bad_id}"),
            ("DELETE", f"/api/v1/conversations/{bad_id}"),
            ("POST", f"/api/v1/conversations/{bad_id}/stop"),
            ("GET", f"/api/v1/conversations/{bad_id}/stream"),
            ("POST", f"/api/v1/messages/{bad_id}/feedback"),
        ):
            body = {"rating": "up"} if path.endswith("feedback") else None
            assert_error(await client.request(method, path, json=body), 404, "not_found")


@pytest.mark.parametrize(
    "raw",
    [
        '{"query":"hi","x":' + "[" * 7000 + "]" * 7000 + "}",
        '{"query":"hi","a":' + '{"a":' * 2700 + "1" + "}" * 2700 + "}",
        "[" * 100_000,
    ],
)
async def test_i11_json_nested_thousands_deep_is_422(app: AsgiApp, raw: str) -> None:
    async with app.client() as client:
        reply = await post_chat(client, content=raw.encode(), headers={"Content-Type": "application/json"})
        assert reply.status in (413, 422), reply.raw[:200]
        assert_error(reply, reply.status, "invalid_input" if reply.status == 422 else "payload_too_large")
        rated = await client.post(  # the same body on a route FastAPI decodes
            "/api/v1/messages/AAAAAAAAAAAAAAAAAAAAAA/feedback",
            content=raw.encode(),
            headers={"Content-Type": "application/json"},
        )
        assert 400 <= rated.status_code < 500, rated.text
