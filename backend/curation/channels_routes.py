"""Creator channels inside the serving process: the admin routes that sync or remove a channel while `lorechat
serve` holds the embedded index, and the scheduler that syncs due channels in the background.

The sync itself is the pipeline's (`pipeline.channels.sync.ChannelSync`), passed in by the composition root, so the
backend never imports the pipeline. It runs in a worker thread under the same lock as an admin ingest (one writer
of the index at a time), and writes SQL through the service's sessions on its loop. A sync's claim on its channel
lives in SQL, so replicas sharing a database never sync one channel twice at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from backend.curation import channels_store
from backend.curation.ingest_routes import INGEST_LOCK, require_admin
from backend.errors import ErrorCode, LorechatError
from backend.retrieval.search import Retriever
from backend.shared_catalog import SharedCatalog
from backend.storage.repository import Sessions

log = logging.getLogger("lorechat.channels")

# Given the service's retriever and database sessions (`sessions=`), the pipeline's channel sync for them
# (`ChannelSync.for_service`): `sync_target(target, stop=)`, `sync_due(stop=)` and `remove(id, keep_documents=)`,
# each run in a worker thread, returning reports with `as_json()` and `wrote_anything`.
ChannelRunner = Callable[..., Any]
T = TypeVar("T")

router = APIRouter(prefix="/api/v1/admin/channels", tags=["admin"], include_in_schema=True)

ChannelId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    # A channel id, a creator slug, or null for every active channel.
    target: str | None = Field(None, min_length=1, max_length=255, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def _runner(request: Request) -> ChannelRunner:
    runner: ChannelRunner | None = request.app.state.channels
    if runner is None:
        raise LorechatError(ErrorCode.not_found, "Channels are not available in this process")
    return runner


async def _exclusive(work: Callable[[threading.Event], T]) -> T:
    """Run `work(stop)` in a worker thread as the index's one writer, after the ingest or sync writing now (a
    scheduled sync is bounded by its channel's items; the caller waits rather than retries)."""
    async with INGEST_LOCK:
        return await run_stoppable(work)


@router.post("/sync", dependencies=[Depends(require_admin)])
async def sync(body: SyncRequest, request: Request) -> dict[str, Any]:
    """`lorechat channels sync` inside the server; the same reports as `lorechat channels sync --json`."""
    runner = _runner(request)
    syncer = runner(request.state.retriever, sessions=request.state.sessions)
    reports = await _exclusive(lambda stop: syncer.sync_target(body.target, stop=stop))
    if any(report.wrote_anything for report in reports):
        await request.state.shared_catalog.refresh(force=True)
    return {"channels": [report.as_json() for report in reports]}


@router.delete("/{channel_id}", dependencies=[Depends(require_admin)])
async def remove(channel_id: ChannelId, request: Request, keep_documents: bool = False) -> dict[str, Any]:
    """`lorechat channels remove` inside the server: the channel, and its documents unless kept."""
    runner = _runner(request)
    syncer = runner(request.state.retriever, sessions=request.state.sessions)
    removed = await _exclusive(lambda _stop: syncer.remove(channel_id, keep_documents=keep_documents))
    await request.state.shared_catalog.refresh(force=True)
    return {"channel": channel_id, "documents_removed": removed}


async def run_stoppable(work: Callable[[threading.Event], T]) -> T:
    """`work(stop)` in a worker thread; when the caller is cancelled (shutdown), `stop` is set so the work ends at
    its next item, and the caller waits for it (its final SQL write still runs on this loop)."""
    stop = threading.Event()
    done = anyio.Event()
    box: list[T] = []
    failed: list[Exception] = []

    async def in_thread() -> None:
        try:
            box.append(await anyio.to_thread.run_sync(work, stop))
        except Exception as exc:  # raised below as itself (a task group would wrap it in an ExceptionGroup)
            failed.append(exc)
        finally:
            done.set()

    async with anyio.create_task_group() as group:
        group.start_soon(in_thread)
        try:
            await done.wait()
        except anyio.get_cancelled_exc_class():
            stop.set()
            raise
    if failed:
        raise failed[0]
    return box[0]


async def schedule(
    runner: ChannelRunner,
    *,
    retriever: Retriever,
    sessions: Sessions,
    shared_catalog: SharedCatalog,
    every_seconds: float,
    first_after_seconds: float = 2.0,
) -> None:
    """The embedded scheduler: every `every_seconds`, sync the channels that are due (a failing channel backs off
    and shows its error; the others go on). Runs until cancelled at shutdown."""
    syncer = runner(retriever, sessions=sessions)
    await anyio.sleep(first_after_seconds)
    while True:
        try:
            # Only a pass with work takes the index's lock: an admin ingest is never refused for an idle look.
            if not await channels_store.due_channels(sessions):
                await anyio.sleep(every_seconds)
                continue
            async with INGEST_LOCK:  # an admin ingest or sync in progress goes first
                reports = await run_stoppable(partial(_due, syncer))
            for report in reports:
                if report.status not in ("ok", "busy"):
                    log.warning("channel %s (%s): %s %s", report.channel_id, report.url, report.status, report.error)
            if any(report.wrote_anything for report in reports):
                await shared_catalog.refresh(force=True)
        except LorechatError as exc:  # the database or the index unavailable: the next pass tries again
            log.warning("channel scheduler: %s", exc.message)
        except Exception:
            log.exception("channel scheduler pass failed")
        await anyio.sleep(every_seconds)


def _due(syncer: Any, stop: threading.Event) -> list[Any]:
    return list(syncer.sync_due(stop=stop))
