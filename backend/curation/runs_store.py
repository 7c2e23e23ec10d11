"""Ingest runs, recorded by the CLI and the admin route, read by the dashboard and the gap inbox's reopen rule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from backend.storage.cleaning import clean_json, clean_text
from backend.storage.models import IngestRun, new_id
from backend.storage.repository import Sessions, db_errors


@dataclass(frozen=True, slots=True)
class IngestRunView:
    id: str
    origin: str
    creator: str | None
    paths: list[str]
    dry_run: bool
    ok: bool
    report: dict[str, Any] | None
    error: str | None
    started_at: datetime
    finished_at: datetime


async def record_run(
    sessions: Sessions,
    *,
    origin: str,
    creator: str | None,
    paths: list[str],
    dry_run: bool,
    ok: bool,
    report: dict[str, Any] | None,
    error: str | None,
    started_at: datetime,
    finished_at: datetime,
) -> str:
    run = IngestRun(
        id=new_id(), origin=origin, creator=creator, paths=[clean_text(p) for p in paths], dry_run=dry_run, ok=ok,
        report=clean_json(report), error=clean_text(error) if error else None, started_at=started_at,
        finished_at=finished_at,
    )  # fmt: skip
    async with db_errors(), sessions() as session, session.begin():
        session.add(run)
    return run.id


async def recent_runs(sessions: Sessions, *, limit: int = 20) -> list[IngestRunView]:
    async with db_errors(), sessions() as session:
        runs = await session.scalars(select(IngestRun).order_by(IngestRun.finished_at.desc()).limit(limit))
        return [
            IngestRunView(
                id=r.id,
                origin=r.origin,
                creator=r.creator,
                paths=list(r.paths),
                dry_run=r.dry_run,
                ok=r.ok,
                report=r.report,
                error=r.error,
                started_at=r.started_at,
                finished_at=r.finished_at,
            )
            for r in runs
        ]


async def last_ingest_per_creator(sessions: Sessions) -> dict[str | None, datetime]:
    """When each creator was last ingested by a real run (key None: runs over every creator)."""
    async with db_errors(), sessions() as session:
        rows = await session.execute(
            select(IngestRun.creator, func.max(IngestRun.finished_at))
            .where(IngestRun.ok.is_(True), IngestRun.dry_run.is_(False))
            .group_by(IngestRun.creator)
        )
        return {creator: finished for creator, finished in rows.all()}
