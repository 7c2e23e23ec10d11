"""Recording ingest runs in the service's database (the dashboard lists them; the gap inbox reopens resolved topics
after the next ingest): `lorechat ingest`'s (a database that cannot be reached never fails the ingest itself), and
the report step of a job on the workers (pipeline/jobs/), whose report names its job and run."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.curation import runs_store
from backend.errors import LorechatError
from backend.settings import Settings
from pipeline.curator_db import Database, with_sessions

log = logging.getLogger(__name__)


def record_cli_run(
    settings: Settings,
    *,
    paths: list[Path],
    creator: str | None,
    dry_run: bool,
    report: dict[str, Any],
    started_at: datetime,
) -> bool:
    """True when recorded; False (with a warning) when the database could not take it."""
    try:
        with_sessions(
            settings,
            lambda sessions: runs_store.record_run(
                sessions, origin="cli", creator=creator, paths=[str(p) for p in paths], dry_run=dry_run,
                ok=not report.get("failed"), report=report, error=None, started_at=started_at,
                finished_at=datetime.now(UTC),
            ),
        )  # fmt: skip
    except (LorechatError, OSError) as exc:
        log.warning("the ingest ran but could not be recorded in the database: %s", exc)
        return False
    return True


def record_job_run(
    database: Database,
    *,
    job: str,
    run: str,
    origin: str,
    creator: str | None,
    paths: list[str],
    ok: bool,
    report: dict[str, Any],
    error: str | None,
    started_at: datetime,
    finished_at: datetime,
) -> str:
    """A job's run (pipeline/jobs/temporal_activities.py's report step), tagged with its job id and run id so
    `lorechat jobs show` finds it; failures propagate (the step is retried)."""
    tagged = {**report, "job": job, "run": run}

    def record(sessions: Any) -> Any:
        return runs_store.record_run(
            sessions, origin=origin, creator=creator, paths=paths, dry_run=False, ok=ok, report=tagged, error=error,
            started_at=started_at, finished_at=finished_at,
        )  # fmt: skip

    return database.run(record)
