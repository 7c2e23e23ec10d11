"""The job's steps (pipeline/jobs/activities.py) as Temporal activities, run by `lorechat worker` processes.

Each worker process holds one `Target` (one model, one store client, one database engine) and runs activities in
threads. What the activities add to the steps:

- **Heartbeats and resume.** A batch heartbeats after every document whose chunks are all written, with the
  position to resume from and the batch's result so far (`BatchResume`). When its worker dies (`kill -9`, a lost
  machine) the heartbeat lapses and Temporal retries the batch on another worker, which starts at that position:
  documents written before are not written again, and one written twice lands on the same point ids anyway.
- **Hand-back on SIGTERM.** A worker that is stopping finishes the chunks it is embedding, reports its position
  and fails the batch as retryable (`HandedBack`): another worker resumes it.
- **Poison documents.** A document that cannot be parsed, chunked or embedded is a report line and the batch goes
  on (activities.py). One that kills its worker outright is written alone after the second death and skipped
  with a report line after the third (`POISON_AFTER`), never a retry storm.
- **Transient faults** (the index or the database unreachable) fail the step as retryable; Temporal retries it
  with back-off. A refusal that a retry cannot change (an unknown channel, an index built by another model) is
  not retried.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from backend.errors import ErrorCode, LorechatError
from backend.settings import Settings
from backend.stages import Document
from backend.storage.repository import Sessions
from pipeline.catalog_update import Listing
from pipeline.jobs import activities as steps
from pipeline.jobs.model import (
    BATCH_ACTIVITY,
    CATALOG_ACTIVITY,
    CHANNEL_ACTIVITY,
    PLAN_ACTIVITY,
    PRUNE_ACTIVITY,
    REPORT_ACTIVITY,
    BatchInput,
    BatchResult,
    BatchResume,
    CatalogInput,
    ChannelRequest,
    ChannelResult,
    CreatorListing,
    FailureLine,
    IngestPlan,
    IngestRequest,
    PruneInput,
    RunRecord,
    WorkItem,
    WrittenDocument,
)
from pipeline.progress import Progress

log = logging.getLogger(__name__)
T = TypeVar("T")

# A document in hand when its worker died this many times is written alone; one more death and it is skipped.
ISOLATE_AFTER = 2
POISON_AFTER = 3
# Files parsed once per worker for the batches that share them (a JSON-lines file holds many documents).
_PARSED_FILES = 8
# A plan larger than this (JSON bytes) would not fit Temporal's payload limit (2 MiB by default).
PLAN_LIMIT_BYTES = 1_500_000


class LoopDatabase:
    """The service's database for a long-lived worker: one engine, migrated once, on an event loop of its own
    (a thread), shared by every activity thread (pipeline/curator_db.py's `Database`)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lorechat-jobs-db", daemon=True)
        self._thread.start()
        self._sessions: Sessions | None = None
        self._engine: Any = None
        self._ready = threading.Lock()

    def run(self, work: Callable[[Sessions], Awaitable[T]]) -> T:
        from backend.storage.repository import db_errors

        async def call() -> T:
            async with db_errors():
                return await work(await self._open())

        future: Future[T] = asyncio.run_coroutine_threadsafe(call(), self._loop)
        return future.result()

    async def _open(self) -> Sessions:
        if self._sessions is None:
            from backend.storage.db import create_engine, migrate, session_factory

            engine = create_engine(self._settings)
            await migrate(engine)
            self._engine, self._sessions = engine, session_factory(engine)
        return self._sessions

    def close(self) -> None:
        async def dispose() -> None:
            if self._engine is not None:
                await self._engine.dispose()

        try:
            asyncio.run_coroutine_threadsafe(dispose(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


@contextmanager
def classified() -> Iterator[None]:
    """Failures as Temporal sees them: transient ones retryable with back-off, refusals final."""
    try:
        yield
    except LorechatError as exc:
        kind = "Refused" if not exc.retryable or exc.code is ErrorCode.index_mismatch else exc.code.value
        if exc.code is ErrorCode.not_found:
            kind = "NotFound"
        raise ApplicationError(exc.message, type=kind, non_retryable=kind in ("Refused", "NotFound")) from exc
    except (OSError, MemoryError) as exc:
        raise ApplicationError(f"{type(exc).__name__}: {exc}", type="Transient") from exc


class _Ticker:
    """Heartbeats from a thread of their own while a step runs, every third of the heartbeat timeout, with the
    step's latest details: a long embedding call is not a lost worker; a dead process stops them all at once."""

    def __init__(self) -> None:
        self.details: tuple[Any, ...] = ()
        self._done = threading.Event()
        timeout = activity.info().heartbeat_timeout
        self._every = max(0.2, timeout.total_seconds() / 3) if timeout else 10.0
        # The thread reports for this activity: it runs in a copy of this thread's context.
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,), daemon=True)

    def beat(self, *details: Any) -> None:
        self.details = details
        activity.heartbeat(*details)

    def _run(self) -> None:
        while not self._done.wait(self._every):
            activity.heartbeat(*self.details)

    def __enter__(self) -> _Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


class _HandBack(Exception):
    """The worker is stopping: report the position and let another worker resume the batch."""


class JobActivities:
    """The activities of one worker process, over its one target (model, store, database)."""

    def __init__(self, settings: Settings, target: steps.Target, *, identity: str) -> None:
        self.settings = settings
        self.target = target
        self.identity = identity
        self._parsed: OrderedDict[tuple[str, int, int], tuple[dict[str, Document], list[steps.Failure]]] = OrderedDict()
        self._parsed_lock = threading.Lock()

    # ---- plan -----------------------------------------------------------------------------------------------

    @activity.defn(name=PLAN_ACTIVITY, no_thread_cancel_exception=True)
    def plan(self, request: IngestRequest) -> IngestPlan:
        with classified(), _Ticker():
            return self._plan(request)

    def _plan(self, request: IngestRequest) -> IngestPlan:
        report = steps.IngestReport()
        parsed = steps.collect(
            [Path(path) for path in request.paths], only_creator=request.only_creator, report=report,
            progress=Progress(),
        )  # fmt: skip
        gated = steps.gate(
            self.target, parsed, report=report, prune=request.prune, sentence_vectors=self.target.sentence_vectors
        )
        items = [
            WorkItem(
                creator=work.document.creator,
                root=str(work.root),
                file=str(work.file),
                document_id=work.document.document_id,
                replaces=work.replaces,
            )
            for work in gated.work
            if work.file is not None and work.root is not None
        ]
        estimates = [self._chunks_estimate(work.document) for work in gated.work if work.file and work.root]
        plan = IngestPlan(
            listings=[_listing_json(listing, keep_indexed=not request.prune) for listing in gated.listings],
            batches=batches(
                items, estimates, chunks=request.batch_chunks, documents=request.batch_documents, slots=request.slots
            ),
            unchanged=report.unchanged,
            failed=[FailureLine(f.source, f.error) for f in report.failed],
            files=sum(len(p.files) for p in parsed),
        )
        # Every listing travels in the workflow's history: a plan past the payload limit is refused with a way out.
        approximate = sum(len(str(dataclasses.asdict(listing))) for listing in plan.listings) + 200 * len(items)
        if approximate > PLAN_LIMIT_BYTES:
            raise ApplicationError(
                f"this job lists about {approximate // 1000} kB of documents, more than one job may carry; ingest "
                "one creator at a time (--creator) or a sub-folder at a time",
                type="PlanTooLarge",
                non_retryable=True,
            )
        return plan

    def _chunks_estimate(self, document: Document) -> int:
        """How many chunks a document makes: chunked here (about 1 % of writing it, for batches that finish together:
        an estimate from its length left the last batch ~25 % larger than the others on the demo corpus)."""
        try:
            return max(1, len(self.target.chunks(document)))
        except Exception:  # a document the chunker cannot take: its batch says so, in a report line
            return 1

    # ---- one batch ------------------------------------------------------------------------------------------

    @activity.defn(name=BATCH_ACTIVITY, no_thread_cancel_exception=True)
    def write_batch(self, batch: BatchInput) -> BatchResult:
        with classified(), _Ticker() as ticker:
            return self._write_batch(batch, ticker)

    def _write_batch(self, batch: BatchInput, ticker: _Ticker) -> BatchResult:
        info = activity.info()
        resume = _resume(info.heartbeat_details)
        base = resume.result or BatchResult(index=batch.index)
        tried = dict(resume.tried)
        if resume.writing and not resume.clean:  # the last attempt died with these documents in hand
            for document_id in resume.writing:
                tried[document_id] = tried.get(document_id, 0) + 1
        base.attempt, base.worker = info.attempt, self.identity
        target = self.target
        writer = steps.BatchWriter(
            retriever=target.retriever, store=target.store, dry_run=False, progress=Progress(),
            sentence_vectors=target.sentence_vectors,
        )  # fmt: skip
        written = steps.Written()
        position = resume.next
        extra: list[FailureLine] = []
        in_hand: list[str] = []

        def beat(next_item: int, *, clean: bool = False) -> None:
            ticker.beat(
                BatchResume(
                    next=next_item,
                    result=_merged(base, written, writer, extra),
                    tried=tried,
                    writing=[] if clean else list(in_hand),
                    clean=clean,
                )
            )

        def works() -> Iterator[steps.Work]:
            nonlocal position
            for index in range(resume.next, len(batch.items)):
                position = index
                if activity.is_worker_shutdown():
                    raise _HandBack
                if activity.is_cancelled() and not _job_cancelled():  # timed out here: another attempt owns it
                    raise CancelledError("the batch was given to another worker")
                item = batch.items[index]
                deaths = tried.get(item.document_id, 0)
                if deaths >= POISON_AFTER:
                    extra.append(
                        FailureLine(
                            item.document_id, f"skipped: its worker died writing it {deaths} times (a poison document)"
                        )
                    )
                    continue
                document = self._document(item, extra)
                if document is None:
                    continue
                in_hand.append(item.document_id)
                beat(index)  # what this worker holds, should it die now
                yield steps.Work(document, replaces=item.replaces)
                if deaths >= ISOLATE_AFTER:
                    writer.flush()  # written alone: a death now names this document only

        def after_each(_position: int) -> None:
            if writer.pending == 0:  # every chunk handed over so far is written
                in_hand.clear()
                beat(position + 1)

        try:
            steps.write_documents(target, works(), writer, after_each=after_each, into=written)
            writer.flush()
        except _HandBack:
            writer.flush()  # the chunks in hand are embedded and written; the rest goes back
            in_hand.clear()
            beat(position, clean=True)
            raise ApplicationError(f"{self.identity} is stopping; batch handed back", type="HandedBack") from None
        except (LorechatError, OSError, MemoryError):
            in_hand.clear()
            beat(resume.next, clean=True)  # a transient fault, not the documents' doing: resume where this began
            raise
        in_hand.clear()
        result = _merged(base, written, writer, extra)
        ticker.beat(BatchResume(next=len(batch.items), result=result, tried=tried, clean=True))
        return result

    def _document(self, item: WorkItem, failures: list[FailureLine]) -> Document | None:
        """The item's document, parsed again from its file here (the file may be on shared storage); None with a
        report line when it cannot be had."""
        file, root = Path(item.file), Path(item.root)
        try:
            stat = file.stat()
        except OSError as exc:
            failures.append(FailureLine(steps.relative(file, root.parent), f"cannot read file: {exc.strerror or exc}"))
            return None
        key = (item.file, stat.st_mtime_ns, stat.st_size)
        with self._parsed_lock:
            cached = self._parsed.get(key)
        if cached is None:
            documents, problems = steps.parse_one(file, creator=item.creator, root=root)
            cached = ({d.document_id: d for d in documents or ()}, problems if documents is None else [])
            with self._parsed_lock:
                self._parsed[key] = cached
                while len(self._parsed) > _PARSED_FILES:
                    self._parsed.popitem(last=False)
        by_id, problems = cached
        if item.document_id in by_id:
            return by_id[item.document_id]
        if problems:
            failures.extend(FailureLine(p.source, p.error) for p in problems[:1])
        else:
            failures.append(FailureLine(item.document_id, "no longer in its file (the file changed during the job)"))
        return None

    # ---- prune, catalog, report ------------------------------------------------------------------------------

    @activity.defn(name=PRUNE_ACTIVITY, no_thread_cancel_exception=True)
    def prune(self, data: PruneInput) -> int:
        with classified(), _Ticker():
            return steps.prune(self.target, data.gone)

    @activity.defn(name=CATALOG_ACTIVITY, no_thread_cancel_exception=True)
    def catalog(self, data: CatalogInput) -> bool:
        with classified(), _Ticker():
            listings: list[Listing] = []
            for listing in data.listings:
                slug = str(listing.creator["slug"])
                still = self.target.store.documents(slug) if listing.keep_indexed else {}
                listings.append(
                    steps.listing_from_json(
                        listing.creator,
                        defines_creator=listing.defines_creator,
                        documents=listing.documents,
                        gone=listing.gone,
                        still_indexed=still,
                    )
                )
            return steps.catalog(self.target, listings, chunks_written=data.chunks_written)

    @activity.defn(name=REPORT_ACTIVITY, no_thread_cancel_exception=True)
    def report(self, record: RunRecord) -> str:
        from pipeline.ingest_runs import record_job_run

        with classified(), _Ticker():
            return record_job_run(
                self.target.require_catalog().database, job=record.job, run=record.run, origin=record.origin,
                creator=record.creator, paths=record.paths, ok=record.ok, report=record.report, error=record.error,
                started_at=_time(record.started_at), finished_at=_time(record.finished_at),
            )  # fmt: skip

    # ---- a channel's sync -------------------------------------------------------------------------------------

    @activity.defn(name=CHANNEL_ACTIVITY, no_thread_cancel_exception=True)
    def sync_channel(self, request: ChannelRequest) -> ChannelResult:
        """One sync of a channel through pipeline/channels/sync.py (its claim held by this workflow run, so a retry
        after a lost worker takes it back at once), stopped at its next item when the worker stops or the job is
        cancelled; a sync the worker's stop cut short is handed back to run again (the hash gate and the
        validators make the second pass cheap)."""
        from pipeline.channels.sync import ChannelSync
        from pipeline.indexer import Indexer

        info = activity.info()
        stop = threading.Event()
        handed_back = threading.Event()
        done = threading.Event()

        def beat() -> None:
            while not done.wait(0.5):
                if activity.is_worker_shutdown():
                    handed_back.set()
                    stop.set()
                if activity.is_cancelled():
                    stop.set()

        # Watches for the worker's stop and the job's cancel (in a copy of this thread's context: this activity's).
        beating = threading.Thread(target=contextvars.copy_context().run, args=(beat,), name="channel-stop")
        indexer = Indexer(retriever=self.target.retriever, chunking=self.settings.chunking, catalog=self.target.catalog)
        syncer = ChannelSync(
            indexer, self.settings, owner=f"job:{info.workflow_id}:{info.workflow_run_id}", in_job=True
        )
        beating.start()
        try:
            with classified(), _Ticker():
                report = syncer.sync(request.channel_id, stop=stop)
        finally:
            done.set()
            beating.join()
        if handed_back.is_set():
            raise ApplicationError(f"{self.identity} is stopping; sync handed back", type="HandedBack")
        return ChannelResult(report=report.as_json(), wrote_anything=report.wrote_anything)


def batches(
    items: list[WorkItem], estimates: list[int], *, chunks: int, documents: int, slots: int = 0
) -> list[list[WorkItem]]:
    """The documents to write, in order, in batches of about `chunks` chunks (the embedder's full batches: a batch
    of a quarter as many costs ~25 % more per chunk) and at most `documents` documents, the chunks spread evenly
    over as many batches as that takes. With `slots` (the batches the polling workers run at once), the count is
    rounded up to a multiple of it while batches keep a quarter of `chunks` or more, so the workers finish
    together instead of one writing the last batch alone."""
    if not items:
        return []
    total = sum(estimates)
    count = max(-(-total // max(1, chunks)), -(-len(items) // max(1, documents)))
    if slots > 1 and count % slots:
        rounded = -(-count // slots) * slots
        if total / rounded >= chunks / 4 and rounded <= len(items):
            count = rounded
    share = total / count
    out: list[list[WorkItem]] = [[]]
    filled = 0.0
    for item, estimate in zip(items, estimates, strict=True):
        if out[-1] and (filled + estimate / 2 > share * len(out) or len(out[-1]) >= documents) and len(out) < count:
            out.append([])
        out[-1].append(item)
        filled += estimate
    return out


def _job_cancelled() -> bool:
    """The batch's cancel came from its job being cancelled (the batch is finished, then the job stops), not from
    Temporal giving the batch up on this worker (a lapsed heartbeat: another attempt owns it now)."""
    details = activity.cancellation_details()
    return details is not None and details.cancel_requested and not (details.timed_out or details.not_found)


def _listing_json(listing: Listing, *, keep_indexed: bool) -> CreatorListing:
    return CreatorListing(
        creator=steps.creator_json(listing.creator),
        defines_creator=listing.defines_creator,
        documents={document_id: steps.entry_json(entry) for document_id, entry in listing.documents.items()},
        gone=list(listing.gone),
        keep_indexed=keep_indexed,
    )


def _resume(details: Any) -> BatchResume:
    """The last heartbeat's `BatchResume` (as JSON: heartbeat details carry no type), or a fresh start."""
    if not details:
        return BatchResume()
    data = details[0] if isinstance(details, (list, tuple)) else details
    if isinstance(data, BatchResume):
        return data
    result = data.get("result")
    return BatchResume(
        next=int(data.get("next", 0)),
        result=_batch_result(result) if result else None,
        tried={str(k): int(v) for k, v in (data.get("tried") or {}).items()},
        writing=[str(d) for d in data.get("writing") or ()],
        clean=bool(data.get("clean", False)),
    )


def _batch_result(data: dict[str, Any]) -> BatchResult:
    return BatchResult(
        index=int(data["index"]),
        added=int(data.get("added", 0)),
        updated=int(data.get("updated", 0)),
        chunks=int(data.get("chunks", 0)),
        written=[WrittenDocument(w["creator"], w["entry"]) for w in data.get("written") or ()],
        failed=[FailureLine(f["source"], f["error"]) for f in data.get("failed") or ()],
        lost={str(k): list(v) for k, v in (data.get("lost") or {}).items()},
        attempt=int(data.get("attempt", 1)),
        worker=str(data.get("worker", "")),
    )


def _merged(
    base: BatchResult, written: steps.Written, writer: steps.BatchWriter, extra: list[FailureLine]
) -> BatchResult:
    """The batch's result: what earlier attempts wrote (`base`) and what this one has written so far."""
    settled = dataclasses.replace(written, entries=list(written.entries), failed=list(written.failed))
    settled.failed_ids = list(written.failed_ids)
    settled.lost = list(written.lost)
    settled.settle(writer)
    lost = {creator: list(ids) for creator, ids in base.lost.items()}
    for creator, document_id in settled.lost:
        lost.setdefault(creator, []).append(document_id)
    return BatchResult(
        index=base.index,
        added=base.added + settled.added,
        updated=base.updated + settled.updated,
        chunks=base.chunks + writer.written,
        written=[*base.written, *(WrittenDocument(c, steps.entry_json(e)) for c, e in settled.entries)],
        failed=[*base.failed, *(FailureLine(f.source, f.error) for f in settled.failed), *extra],
        lost=lost,
        attempt=base.attempt,
        worker=base.worker,
    )


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def worker_identity() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"
