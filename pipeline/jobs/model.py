"""What a job's steps hand each other: plain dataclasses of strings, numbers, lists and dicts (JSON through
Temporal's payload converter, and in memory for the local runner), and the jobs' ids.

Imported by the workflow definitions inside Temporal's sandbox, so it imports nothing but the standard library
and the id gate: a creator, a catalog entry or a document travels here as its JSON dict, made and read back by
pipeline/jobs/activities.py.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from backend.errors import ErrorCode, LorechatError
from backend.ids import is_slug

# Temporal names, shared by the worker (which registers them) and the workflows (which call them by name, so the
# workflow module never imports the activities' code).
INGEST_WORKFLOW = "lorechat.ingest"
CHANNEL_WORKFLOW = "lorechat.channel_sync"
PLAN_ACTIVITY = "lorechat.plan"
BATCH_ACTIVITY = "lorechat.write_batch"
PRUNE_ACTIVITY = "lorechat.prune"
CATALOG_ACTIVITY = "lorechat.catalog"
REPORT_ACTIVITY = "lorechat.report"
CHANNEL_ACTIVITY = "lorechat.sync_channel"

# A failure whose error type is one of these is not retried: retrying cannot change the answer.
NOT_RETRYABLE = ("Refused", "PlanTooLarge", "NotFound")

_INGEST_ID = re.compile(r"ingest:([0-9a-f]{16}|[a-z0-9][a-z0-9-]{0,63})")
_CHANNEL_ID = re.compile(r"channel:([1-9][0-9]{0,9})")


def ingest_job_id(paths: list[str], only_creator: str | None) -> str:
    """`ingest:<creator>` for one creator's ingest, else `ingest:<16 hex of the resolved paths>`: the same request
    started twice gets the same id, so the second start joins the first."""
    if only_creator is not None and is_slug(only_creator):
        return f"ingest:{only_creator}"
    digest = hashlib.sha256("\x00".join(sorted(paths)).encode()).hexdigest()[:16]
    return f"ingest:{digest}"


def channel_job_id(channel_id: int) -> str:
    return f"channel:{channel_id}"


def require_job_id(value: object) -> str:
    """A job id as `ingest_job_id` or `channel_job_id` make them (the creator part through backend/ids.py's slug
    rule); anything else (a NUL, a 5,000-character argument, another workflow's id) is "no such job" before it
    reaches Temporal."""
    if isinstance(value, str) and len(value) <= 80:
        ingest = _INGEST_ID.fullmatch(value)
        if ingest is not None and (is_slug(ingest.group(1)) or len(ingest.group(1)) == 16):
            return value
        if _CHANNEL_ID.fullmatch(value) is not None and int(value.split(":")[1]) <= 2**31 - 1:
            return value
    raise LorechatError(ErrorCode.not_found, "No such job")


@dataclass(slots=True)
class FailureLine:
    """One line of a run report: a file, a document or an item, and why it was not indexed."""

    source: str
    error: str


@dataclass(slots=True)
class IngestRequest:
    """A folder ingest: what `lorechat ingest PATHS` asks (paths resolved on the machine that asked)."""

    paths: list[str]
    only_creator: str | None = None
    prune: bool = False
    origin: str = "cli"  # who asked: cli, admin (the route), recorded with the run
    batch_chunks: int = 256  # about this many chunks per batch activity
    batch_documents: int = 512  # and at most this many documents
    parallel_batches: int = 8  # batch activities in flight at once, across every worker
    slots: int = 0  # batches the workers polling at the start run at once (0: unknown); the plan evens out for them


@dataclass(slots=True)
class WorkItem:
    """One document to write: the file it comes from (parsed again by whichever worker writes it) and whether it
    replaces an indexed version (its chunks deleted first)."""

    creator: str
    root: str  # the creator folder
    file: str  # the content file, absolute
    document_id: str
    replaces: bool


@dataclass(slots=True)
class CreatorListing:
    """A creator's catalog entry as the run learns it (backend/catalog.py's shapes as JSON): its profile, its
    documents (unchanged ones from the plan, written ones from the batches), what was pruned, and whether
    documents still indexed but no longer in the folder stay listed (an ingest without prune)."""

    creator: dict[str, Any]
    defines_creator: bool = True
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)
    keep_indexed: bool = False


@dataclass(slots=True)
class IngestPlan:
    """What changed, through the hash gate: the documents to write in batches, and the rest of the report."""

    listings: list[CreatorListing]
    batches: list[list[WorkItem]]
    unchanged: int = 0
    failed: list[FailureLine] = field(default_factory=list)
    files: int = 0

    @property
    def documents_total(self) -> int:
        return sum(len(batch) for batch in self.batches)


@dataclass(slots=True)
class BatchInput:
    job: str
    index: int
    items: list[WorkItem]


@dataclass(slots=True)
class WrittenDocument:
    creator: str
    entry: dict[str, Any]  # its CatalogDocument as JSON


@dataclass(slots=True)
class BatchResult:
    """One batch written: the documents' catalog entries, what was added or replaced, the chunks written, the
    documents that failed alone (a report line each), and which attempt and worker finished it."""

    index: int
    added: int = 0
    updated: int = 0
    chunks: int = 0
    written: list[WrittenDocument] = field(default_factory=list)
    failed: list[FailureLine] = field(default_factory=list)
    # Replaced documents whose new version failed after the old chunks went (creator -> ids): unlisted too.
    lost: dict[str, list[str]] = field(default_factory=dict)
    attempt: int = 1
    worker: str = ""


@dataclass(slots=True)
class BatchResume:
    """A batch's heartbeat: where a retry (another worker, after this one died or was stopped) picks up."""

    next: int = 0  # the first item not yet fully written
    result: BatchResult | None = None
    tried: dict[str, int] = field(default_factory=dict)  # document id -> attempts that died while writing it
    writing: list[str] = field(default_factory=list)  # documents in hand (chunked, not yet all written)
    clean: bool = False  # the attempt ended by itself (finished, handed back, a transient fault): no death


@dataclass(slots=True)
class PruneInput:
    job: str
    gone: dict[str, list[str]]  # creator -> document ids to remove


@dataclass(slots=True)
class CatalogInput:
    job: str
    listings: list[CreatorListing]
    chunks_written: int = 0


@dataclass(slots=True)
class RunRecord:
    """The run report as recorded in SQL (ingest_runs) at the end of a job."""

    job: str
    run: str
    origin: str
    creator: str | None
    paths: list[str]
    report: dict[str, Any]
    ok: bool
    error: str | None
    started_at: str  # ISO 8601, UTC
    finished_at: str


@dataclass(slots=True)
class JobProgress:
    """What a running job tells `lorechat jobs show` and /admin (a workflow query)."""

    state: str = "planning"  # planning, writing, pruning, cataloguing, reporting, done, cancelled, failed
    documents_total: int = 0
    documents_done: int = 0
    chunks: int = 0
    batches_total: int = 0
    batches_done: int = 0
    current_batches: list[int] = field(default_factory=list)
    retries: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ChannelRequest:
    channel_id: int
    origin: str = "schedule"  # schedule, cli, admin


@dataclass(slots=True)
class ChannelResult:
    report: dict[str, Any]  # ChannelReport.as_json()
    wrote_anything: bool = False
