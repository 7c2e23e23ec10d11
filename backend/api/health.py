"""Liveness, readiness (each dependency's state) and Prometheus metrics."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from backend.metrics import REGISTRY
from backend.storage.db import ping

router = APIRouter(tags=["health"])

_CHECK_SECONDS = 1.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up; says nothing about dependencies."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """200 when the index and the database answer (Redis and tiers may be degraded), else 503."""
    state = request.state
    checks: dict[str, Any] = {
        "database": await _bounded(ping(state.engine)),
        # Abandoned on timeout, or a hung index would hang the probe too (a thread cannot be cancelled).
        "index": await _bounded(
            anyio.to_thread.run_sync(state.retriever.store.points, abandon_on_cancel=True), truthy=True
        ),
        "redis": await _bounded(state.limiter.healthy()) if state.settings.redis.url else "not configured",
        "tiers": {name: breaker.state.value for name, breaker in state.cascade.breakers.items()},
        # Local model processes: ready, starting, restarting (after a crash) or broken (disabled).
        "models": {tier.name: tier.status for tier in state.cascade.tiers if tier.kind == "llama_cpp"},
        # "native", or "python (why)": a uvicorn whose internals the C relay does not know gets the Python one.
        "token_path": state.chat.token_path,
    }
    essential_ok = checks["database"] == "ok" and checks["index"] == "ok"
    degraded = (
        checks["redis"] not in ("ok", "not configured")
        or any(v != "closed" for v in checks["tiers"].values())
        or any(v in ("restarting", "broken") for v in checks["models"].values())
    )
    status = "unavailable" if not essential_ok else "degraded" if degraded else "ready"
    return JSONResponse({"status": status, "checks": checks}, status_code=200 if essential_ok else 503)


@router.get("/metrics")
async def metrics() -> PlainTextResponse:
    return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


async def _bounded(check: Any, *, truthy: bool = False) -> str:
    try:
        with anyio.fail_after(_CHECK_SECONDS):
            result = await check
    except TimeoutError:
        return "timeout"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    if truthy:
        return "ok"
    return "ok" if result else "down"
