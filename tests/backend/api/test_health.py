"""Liveness, readiness, metrics, and the error shape of requests no route answers (INV-6)."""

from __future__ import annotations

import asyncio

from tests.backend.api.harness import UPSTREAM, Backend, LiveApp
from tests.backend.api.streams import assert_error, post_chat
from tests.fakes import ScriptedOpenAI


async def test_healthz(main_app: LiveApp) -> None:
    async with main_app.client() as client:
        reply = await client.get("/healthz")
    assert reply.status_code == 200 and reply.json() == {"status": "ok"}
    assert reply.headers["x-request-id"]


async def test_readyz_reports_each_dependency(main_app: LiveApp, backend: Backend) -> None:
    async with main_app.client() as client:
        reply = await client.get("/readyz")
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "ready"
    checks = body["checks"]
    assert checks["database"] == "ok" and checks["index"] == "ok"
    assert checks["redis"] == ("ok" if backend.redis_url else "not configured")
    assert checks["tiers"][UPSTREAM] == "closed"
    assert checks["token_path"] == "native"  # the C relay, with the uvicorn the project bounds itself to


async def test_metrics_and_stream_gauge_back_to_zero(main_app: LiveApp, upstream: ScriptedOpenAI) -> None:
    async with main_app.client() as client:
        assert (await post_chat(client, {"query": "Is rye flour faster?"})).stream.done
        for _ in range(100):  # the server finishes its bookkeeping just after the last byte
            text = (await client.get("/metrics")).text
            if "lorechat_streams_active 0.0" in text:
                break
            await asyncio.sleep(0.02)
    assert "lorechat_streams_active 0.0" in text  # INV-4
    for name in ("lorechat_http_requests_total", "lorechat_time_to_sources_seconds", "lorechat_tier_answers_total"):
        assert name in text
    assert f'lorechat_tier_answers_total{{tier="{UPSTREAM}"}}' in text
    # The chat route is a plain ASGI route (api/chat.py), still counted under its own path.
    assert 'lorechat_http_requests_total{route="/api/v1/chat",status="200"}' in text


async def test_unrouted_requests_use_the_error_shape(main_app: LiveApp) -> None:
    async with main_app.client() as client:
        missing = await client.get("/api/v1/nothing-here")
        wrong_method = await client.put("/api/v1/chat", json={"query": "x"})
        request_id = await client.get("/api/v1/nothing-here", headers={"X-Request-ID": "trace-1234abcd"})
    assert_error(missing, 404, "not_found")
    assert_error(wrong_method, 405, "invalid_input")
    assert assert_error(request_id, 404, "not_found")["request_id"] == "trace-1234abcd"
