"""Curator operations over HTTP, for when `lorechat serve` holds the embedded index: ingest through the server.

Reachable only with the admin bearer token from the environment (S5); disabled when none is configured.
Paths are on the server's filesystem, as they would be for the CLI on that machine.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import client_ip_of, credentials_of
from backend.curation import admin_session, runs_store
from backend.errors import ErrorCode, LorechatError
from backend.settings import Settings
from backend.storage.models import utcnow

# Given the service's retriever and its database sessions, the pipeline's indexer for them
# (`pipeline.indexer.Indexer.from_settings`): its `ingest(paths, *, only_creator, prune, dry_run)`, run in a worker
# thread, writes the catalog through those sessions on the service's event loop and returns a report with as_json().
# With jobs.engine temporal it is a job on the workers instead (pipeline/jobs/client.py: `records_runs`).
IngestRunner = Callable[..., Any]

router = APIRouter(prefix="/api/v1/admin", tags=["admin"], include_in_schema=True)

# One writer of the index at a time (an ingest, a channel sync: channels_routes.py): two would race on the same
# documents' chunks.
INGEST_LOCK = anyio.Lock()


async def require_admin(request: Request) -> None:
    settings: Settings = request.app.state.settings
    token = admin_session.admin_token(settings.auth)
    if not token:
        raise LorechatError(ErrorCode.not_found, "Admin operations are disabled (set LORECHAT_AUTH__ADMIN_TOKEN)")
    authorization = request.headers.get("authorization")
    if not authorization:  # no credential presented: nothing to check, nothing to count
        raise LorechatError(ErrorCode.unauthorized, "Admin token required")
    scheme, _, given = authorization.partition(" ")

    def matches() -> bool:
        return scheme.lower() == "bearer" and admin_session.token_matches(given.strip(), token)

    # Rate-limited per address before the token is compared (backend/credential_guard.py).
    if not await credentials_of(request).check(client_ip_of(request), matches):
        raise LorechatError(ErrorCode.unauthorized, "Admin token required")


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    # A NUL cannot be in a file name (the OS refuses it): 422 here rather than an error deep in pathlib (I4).
    paths: list[Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00]+$")]] = Field(
        min_length=1, max_length=100
    )
    creator: str | None = Field(None, max_length=64, pattern=r"^[^\x00]+$")
    prune: bool = False
    dry_run: bool = False


@router.post("/ingest", dependencies=[Depends(require_admin)])
async def ingest(body: IngestRequest, request: Request) -> dict[str, Any]:
    """Run `lorechat ingest` inside the server; returns the same report as `lorechat ingest --json`."""
    # Injected by the composition root (`lorechat serve`): the backend never imports the pipeline.
    indexer_for: IngestRunner | None = request.app.state.ingest
    if indexer_for is None:
        raise LorechatError(ErrorCode.not_found, "Ingest over HTTP is not available in this process")
    retriever = request.state.retriever
    if INGEST_LOCK.locked():
        raise LorechatError(ErrorCode.conflict, "Another ingest is running; try again when it finishes", retry_after=5)
    async with INGEST_LOCK:
        started = utcnow()
        runner = indexer_for(retriever, sessions=request.state.sessions)
        report = await anyio.to_thread.run_sync(
            partial(
                runner.ingest,
                [Path(path) for path in body.paths],
                only_creator=body.creator,
                prune=body.prune,
                dry_run=body.dry_run,
            )
        )
    result: dict[str, Any] = report.as_json()
    # In SQL for the curator dashboard and the gap inbox's "reopen after the next ingest" rule; an ingest that ran as
    # a job on the workers (jobs.engine temporal) recorded its own run.
    if body.dry_run or not getattr(runner, "records_runs", False):
        await runs_store.record_run(
            request.state.sessions, origin="admin", creator=body.creator, paths=body.paths, dry_run=body.dry_run,
            ok=not result.get("failed"), report=result, error=None, started_at=started, finished_at=utcnow(),
        )  # fmt: skip
    if not body.dry_run:
        await request.state.shared_catalog.refresh(force=True)  # this replica sees it now, the others within a second
    return result
