"""Send an ingest or a channel sync to the running server when it holds the embedded index (one process per Edge
shard)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from backend.errors import ErrorCode, LorechatError
from backend.settings import Settings

# Ingesting a large folder or syncing a large channel can take minutes; the server answers when the report is ready.
REMOTE_INGEST_TIMEOUT_SECONDS = 3600.0


def ingest_through_server(
    settings: Settings,
    paths: list[Path],
    *,
    only_creator: str | None,
    prune: bool,
    dry_run: bool,
) -> dict[str, Any]:
    body = {
        "paths": [str(path.resolve()) for path in paths],
        "creator": only_creator,
        "prune": prune,
        "dry_run": dry_run,
    }
    return admin_call(settings, "POST", "/api/v1/admin/ingest", body=body, what="ingest")


def admin_call(
    settings: Settings,
    method: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    what: str,
    passthrough: tuple[ErrorCode, ...] = (),
) -> dict[str, Any]:
    """One admin request to the server on this machine, with the admin token; index_locked when it cannot be done,
    or the server's own error when its code is one of `passthrough`."""
    token = settings.auth.admin_token.get_secret_value() if settings.auth.admin_token else ""
    host = "127.0.0.1" if settings.server.host in ("0.0.0.0", "::") else settings.server.host
    url = f"http://{host}:{settings.server.port}{path}"
    try:
        response = httpx.request(
            method,
            url,
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(REMOTE_INGEST_TIMEOUT_SECONDS, connect=5.0),
        )
    except httpx.HTTPError as exc:
        raise LorechatError(
            ErrorCode.index_locked,
            f"The index is held by another process and the server at {url} did not answer ({type(exc).__name__}).",
        ) from exc
    if response.status_code != 200:
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        answer = answer if isinstance(answer, dict) else {}
        message = answer.get("message") or response.text or response.reason_phrase
        code = next((c for c in passthrough if c.value == answer.get("code")), None)
        if code is not None:  # the server's answer about the request itself (no such channel, one is syncing)
            raise LorechatError(code, f"The running server: {message}")
        raise LorechatError(ErrorCode.index_locked, f"The running server refused the {what}: {message}")
    return response.json()
