"""Send an ingest to the running server when it holds the embedded index (one process per Edge shard)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from backend.errors import ErrorCode, LorechatError
from backend.settings import Settings

# Ingesting a large folder can take minutes; the server answers when the report is ready.
REMOTE_INGEST_TIMEOUT_SECONDS = 3600.0


def ingest_through_server(
    settings: Settings,
    paths: list[Path],
    *,
    only_creator: str | None,
    prune: bool,
    dry_run: bool,
) -> dict[str, Any]:
    token = settings.auth.admin_token.get_secret_value() if settings.auth.admin_token else ""
    host = "127.0.0.1" if settings.server.host in ("0.0.0.0", "::") else settings.server.host
    url = f"http://{host}:{settings.server.port}/api/v1/admin/ingest"
    body = {
        "paths": [str(path.resolve()) for path in paths],
        "creator": only_creator,
        "prune": prune,
        "dry_run": dry_run,
    }
    try:
        response = httpx.post(
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
        message = response.json().get("message", response.text) if response.content else response.reason_phrase
        raise LorechatError(ErrorCode.index_locked, f"The running server refused the ingest: {message}")
    return response.json()
