"""Recording `lorechat ingest` runs in the service's database (the dashboard lists them; the gap inbox reopens
resolved topics after the next ingest). A database that cannot be reached never fails the ingest itself."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.curation import runs_store
from backend.errors import LorechatError
from backend.settings import Settings
from pipeline.curator_db import with_sessions

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
