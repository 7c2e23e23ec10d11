"""What the curator dashboard shows, as plain tables (columns + rows): one source for the HTML page and for
every CSV / JSON export, so an export always equals what the page shows."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import anyio
import numpy as np

from backend.catalog import Catalog
from backend.curation import answers_store, channels_store, gaps_store, runs_store, sites_store, stats_store
from backend.curation.gaps import extractive_tier_names, refresh_gaps
from backend.errors import LorechatError
from backend.settings import Settings
from backend.storage.repository import Sessions

Cell = str | int | float | bool | None
WINDOW_DAYS = 30
# Gap answers grouped per page load (embedding runs ~200-500 questions/s on 2 cores): a backlog, e.g. after an
# upgrade, is worked off over a few loads or at once by `lorechat gaps`, never in one minute-long request.
REFRESH_PER_LOAD = 1000
# One refresh at a time per process: two would embed the same new questions twice (the second write fails).
_REFRESH = anyio.Lock()


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    # Per row, extra values the page needs but exports leave out (e.g. a gap topic's id for its form).
    keys: list[str] = field(default_factory=list)
    # A line the page shows above the rows (e.g. why a source could not be read); exports leave it out.
    note: str | None = None

    def as_json(self) -> str:
        return json.dumps([dict(zip(self.columns, row, strict=True)) for row in self.rows], ensure_ascii=False)

    def as_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(self.columns)
        writer.writerows([[_csv_safe(cell) for cell in row] for row in self.rows])
        return out.getvalue()


TABLES = (
    "gaps", "answers", "starters", "channels", "creators", "ingest_runs", "questions_per_day", "answers_per_tier",
    "ttft", "feedback", "sites",
)  # fmt: skip


def _csv_safe(cell: Cell) -> Cell:
    # Visitor text opened in a spreadsheet must not run as a formula (CSV injection).
    if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + cell
    return cell


def _time(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else None


async def refresh_gap_inbox(sessions: Sessions, settings: Settings, embed_sync: Callable[[list[str]], Any]) -> int:
    """Group new gap answers, embedding in a worker thread (the model is CPU-bound; the loop keeps serving)."""

    async def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(await anyio.to_thread.run_sync(embed_sync, texts))

    async with _REFRESH:
        return await refresh_gaps(
            sessions, embed, extractive_tiers=extractive_tier_names(settings), at_most=REFRESH_PER_LOAD
        )


async def build_table(name: str, *, sessions: Sessions, catalog: Catalog, now: datetime | None = None) -> Table:
    now = now or datetime.now(UTC)
    since = now - timedelta(days=WINDOW_DAYS)
    builder = _BUILDERS.get(name)
    if builder is None:
        raise KeyError(name)
    return await builder(sessions, catalog, since)


class JobsReader(Protocol):
    """The jobs client the composition root passes in with `jobs.engine: temporal` (pipeline/jobs/client.py:
    `Jobs`); synchronous, so it is called in a worker thread. Its views have `as_json()` (`JobView`)."""

    def list(self, *, limit: int = 20) -> list[Any]: ...

    def cancel(self, job_id: str) -> Any: ...


JOB_COLUMNS = [
    "job", "kind", "of", "state", "documents", "chunks", "batches_in_flight", "retries", "failed", "workers",
    "started", "ended", "last_error",
]  # fmt: skip


async def jobs_table(reader: JobsReader, *, limit: int = 20) -> Table:
    """Recent ingest jobs from Temporal's visibility and each running job's own progress (the jobs client).
    Temporal out of reach is a note on the table, not a failed dashboard: the rest of the page reads SQL."""
    try:
        views = [view.as_json() for view in await anyio.to_thread.run_sync(lambda: reader.list(limit=limit))]
    except LorechatError as exc:
        return Table("jobs", "Ingest jobs", JOB_COLUMNS, note=exc.message)
    rows: list[list[Cell]] = []
    for view in views:
        total = view["documents_total"]
        rows.append([
            view["id"], view["kind"], view.get("target"), view["state"],
            f"{view['documents_done']}/{total}" if total else "0", view["chunks"],
            ", ".join(str(batch) for batch in view["current_batches"]) or None, view["retries"], view["failed"],
            ", ".join(view["workers"]) or None, _iso_minute(view.get("started")), _iso_minute(view.get("ended")),
            view["errors"][-1] if view["errors"] else None,
        ])  # fmt: skip
    # The page offers "Cancel" on running jobs: their ids (in `keys`) and statuses ride along.
    keys = [view["id"] if view["status"] == "running" else "" for view in views]
    return Table("jobs", "Ingest jobs", JOB_COLUMNS, rows, keys=keys)


def _iso_minute(moment: str | None) -> str | None:
    return _time(datetime.fromisoformat(moment)) if moment else None


async def _gaps(sessions: Sessions, _catalog: Catalog, _since: datetime) -> Table:
    topics = await gaps_store.list_topics(sessions, limit=100)
    # A topic back in the inbox although a curated answer was written for it: visitors ask it in words the answer's
    # phrasings did not match. Its new questions can be added to that answer as phrasings.
    answers = await answers_store.written_for(sessions, [t.id for t in topics])
    rows: list[list[Cell]] = [
        [
            t.creator or "(no creator)",
            t.count,
            t.label,
            " | ".join(t.examples),
            " | ".join(str(s.get("title") or s.get("document_id")) for s in t.sources),
            ", ".join(f"{k} {v}" for k, v in sorted(t.signals.items())),
            _time(t.first_seen),
            _time(t.last_seen),
            t.id,
            answers.get(t.id, ""),
        ]
        for t in topics
    ]
    columns = [
        "creator", "count", "topic", "examples", "best_sources", "signals", "first_seen", "last_seen", "id", "answer",
    ]  # fmt: skip
    return Table("gaps", "Knowledge-gap inbox", columns, rows, keys=[t.id for t in topics])


async def _answers(sessions: Sessions, _catalog: Catalog, _since: datetime) -> Table:
    """Curated answers (answers.py) with how often each was served and the 👍/👎 those answers got."""
    rows: list[list[Cell]] = [
        [
            a.creator or "(all creators)", " | ".join(a.questions), a.answer, " ".join(a.documents), a.version,
            a.status, a.uses, a.up, a.down, _time(a.updated_at), a.id,
        ]
        for a in await answers_store.list_answers(sessions, include_retired=True, limit=200)
    ]  # fmt: skip
    columns = [
        "creator", "questions", "answer", "documents", "version", "status", "uses", "up", "down", "updated", "id",
    ]  # fmt: skip
    return Table("answers", "Curated answers", columns, rows, keys=[str(row[-1]) for row in rows])


async def _starters(sessions: Sessions, _catalog: Catalog, _since: datetime) -> Table:
    rows: list[list[Cell]] = [
        [s.creator or "(any creator)", s.site or "(any site)", " | ".join(s.questions)]
        for s in await answers_store.list_starters(sessions)
    ]
    return Table("starters", "Starter questions", ["creator", "site", "questions"], rows)


async def _creators(sessions: Sessions, catalog: Catalog, _since: datetime) -> Table:
    last = await runs_store.last_ingest_per_creator(sessions)
    rows: list[list[Cell]] = []
    for slug, entry in sorted(catalog.creators.items()):
        ingested = max((t for t in (last.get(slug), last.get(None)) if t), default=None)
        for doc in sorted(entry.documents.values(), key=lambda d: d.title.lower()):
            rows.append([slug, entry.creator.name, doc.title or doc.source, doc.kind, doc.chunks, _time(ingested)])
    columns = ["creator", "name", "document", "kind", "chunks", "last_ingested"]
    return Table("creators", "Creators and their documents", columns, rows)


async def _ingest_runs(sessions: Sessions, _catalog: Catalog, _since: datetime) -> Table:
    rows: list[list[Cell]] = []
    for run in await runs_store.recent_runs(sessions, limit=20):
        report = run.report or {}
        failed = report.get("failed") or []
        rows.append([
            _time(run.finished_at), run.origin, run.creator or "(all)", run.dry_run, run.ok,
            report.get("added"), report.get("updated"), report.get("unchanged"), report.get("pruned"),
            len(failed) if isinstance(failed, list) else failed, run.error,
        ])  # fmt: skip
    columns = [
        "finished",
        "origin",
        "creator",
        "dry_run",
        "ok",
        "added",
        "updated",
        "unchanged",
        "pruned",
        "failed",
        "error",
    ]
    return Table("ingest_runs", "Recent ingest runs", columns, rows)


async def _channels(sessions: Sessions, _catalog: Catalog, _since: datetime) -> Table:
    rows: list[list[Cell]] = []
    for c in await channels_store.list_channels(sessions):
        status = "paused" if c.paused else "syncing" if c.syncing else c.last_status or "never synced"
        rows.append([
            c.id, c.creator, c.kind, c.url, _every(c.interval_seconds), status, _time(c.last_sync_at),
            None if c.paused else _time(c.next_sync_at), c.items, c.documents, c.failures, c.last_error,
        ])  # fmt: skip
    columns = [
        "id", "creator", "kind", "url", "every", "status", "last_sync", "next_sync", "items", "documents",
        "failures", "last_error",
    ]  # fmt: skip
    return Table("channels", "Channels (lorechat channels)", columns, rows)


def _every(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


async def _questions_per_day(sessions: Sessions, _catalog: Catalog, since: datetime) -> Table:
    rows: list[list[Cell]] = [[d.day, d.questions] for d in await stats_store.questions_per_day(sessions, since=since)]
    return Table("questions_per_day", f"Questions per day (last {WINDOW_DAYS} days)", ["day", "questions"], rows)


async def _answers_per_tier(sessions: Sessions, _catalog: Catalog, since: datetime) -> Table:
    rows: list[list[Cell]] = [
        [t.tier, t.status, t.answers] for t in await stats_store.answers_per_tier(sessions, since=since)
    ]
    return Table("answers_per_tier", "Answers per tier", ["tier", "status", "answers"], rows)


async def _ttft(sessions: Sessions, _catalog: Catalog, since: datetime) -> Table:
    p50 = await stats_store.ttft_p50_ms(sessions, since=since)
    title = f"Time to first token (median of the last {stats_store.TTFT_SAMPLE:,} timed answers)"
    return Table("ttft", title, ["window_days", "p50_ms"], [[WINDOW_DAYS, p50]])


async def _feedback(sessions: Sessions, _catalog: Catalog, since: datetime) -> Table:
    rows: list[list[Cell]] = [
        [c.creator or "(no creator)", c.up, c.down] for c in await stats_store.feedback_counts(sessions, since=since)
    ]
    return Table("feedback", "Feedback (helpful / not helpful)", ["creator", "up", "down"], rows)


async def _sites(sessions: Sessions, _catalog: Catalog, _since: datetime) -> Table:
    rows: list[list[Cell]] = [
        [
            s.name,
            " ".join(s.origins),
            ", ".join(s.creators) or "(all)",
            s.daily_limit,
            s.requests_today,
            s.refused_today,
            s.requests_total,
        ]
        for s in await sites_store.list_sites(sessions)
    ]
    columns = ["site", "origins", "creators", "daily_limit", "today", "refused_today", "total"]
    return Table("sites", "Sites and their usage", columns, rows)


_BUILDERS: dict[str, Callable[[Sessions, Catalog, datetime], Awaitable[Table]]] = {
    "gaps": _gaps,
    "answers": _answers,
    "starters": _starters,
    "channels": _channels,
    "creators": _creators,
    "ingest_runs": _ingest_runs,
    "questions_per_day": _questions_per_day,
    "answers_per_tier": _answers_per_tier,
    "ttft": _ttft,
    "feedback": _feedback,
    "sites": _sites,
}
