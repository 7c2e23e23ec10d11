"""Temporal workflows: a folder ingest and a channel sync as durable jobs (`jobs.engine: temporal`).

Deterministic and sandbox-safe: this module imports only Temporal's workflow API and pipeline/jobs/model.py, and
calls the activities by name (pipeline/jobs/temporal_activities.py registers them in `lorechat worker`).

An ingest job: plan (parse, hash gate) → its batches, `parallel_batches` at a time on whichever workers poll →
prune → catalog (one transaction, after the index writes) → the run report in SQL. A batch that still fails after
its retries becomes report lines, never a stuck job. Cancelled, the job schedules no further batch, waits for the
batches in flight, prunes nothing, and still lists what was written in the catalog and records the run, so the
index and the catalog agree; it then ends as cancelled.

The workflow's id comes from what it works on (`ingest:<creator or paths>`, `channel:<id>`, model.py); started
with a running one's id, a start joins it (pipeline/jobs/client.py).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from pipeline.jobs.model import (
        BATCH_ACTIVITY,
        CATALOG_ACTIVITY,
        CHANNEL_ACTIVITY,
        CHANNEL_WORKFLOW,
        INGEST_WORKFLOW,
        NOT_RETRYABLE,
        PLAN_ACTIVITY,
        PRUNE_ACTIVITY,
        REPORT_ACTIVITY,
        BatchInput,
        BatchResult,
        CatalogInput,
        ChannelRequest,
        ChannelResult,
        CreatorListing,
        FailureLine,
        IngestPlan,
        IngestRequest,
        JobProgress,
        PruneInput,
        RunRecord,
    )

# The longest one step may take, start to end, whatever its heartbeats say (a batch of documents, a plan).
STEP_LIMIT = timedelta(hours=6)


def retry_policy(max_attempts: int) -> RetryPolicy:
    """Transient faults retried with exponential back-off (1 s, 2 s, 4 s … at most a minute apart)."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=60),
        maximum_attempts=max_attempts,
        non_retryable_error_types=list(NOT_RETRYABLE),
    )


def _reason(error: BaseException) -> str:
    """The root cause's message, for a report line."""
    cause: BaseException | None = error
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    return str(cause) if cause is not None else str(error)


@workflow.defn(name=INGEST_WORKFLOW)
class IngestJob:
    """One folder ingest (`lorechat ingest PATHS` with `jobs.engine: temporal`)."""

    def __init__(self) -> None:
        self._progress = JobProgress()

    @workflow.query
    def progress(self) -> JobProgress:
        return self._progress

    @workflow.run
    async def run(self, request: IngestRequest, heartbeat_seconds: float, max_attempts: int) -> dict[str, Any]:
        started = workflow.now()
        progress = self._progress
        options: dict[str, Any] = {
            "start_to_close_timeout": STEP_LIMIT,
            "heartbeat_timeout": timedelta(seconds=heartbeat_seconds),
            "retry_policy": retry_policy(max_attempts),
        }
        cancelled = False
        try:
            plan: IngestPlan = await workflow.execute_activity(
                PLAN_ACTIVITY, request, result_type=IngestPlan, **options
            )
        except asyncio.CancelledError:
            progress.state = "cancelled"
            raise
        except ActivityError as exc:  # the paths could not be planned at all: one report line, recorded
            progress.state = "failed"
            report = _report([], [FailureLine(", ".join(request.paths), _reason(exc))], 0, 0)
            await self._record(request, started, report, ok=False, error=_reason(exc), options=options)
            raise ApplicationError(f"the ingest could not be planned: {_reason(exc)}", non_retryable=True) from exc

        progress.state = "writing"
        progress.documents_total = plan.documents_total
        progress.batches_total = len(plan.batches)
        results: list[BatchResult] = []
        failed: list[FailureLine] = list(plan.failed)
        running: dict[workflow.ActivityHandle[BatchResult], int] = {}
        job = workflow.info().workflow_id
        next_batch = 0
        try:
            while next_batch < len(plan.batches) or running:
                while next_batch < len(plan.batches) and len(running) < max(1, request.parallel_batches):
                    batch = BatchInput(job=job, index=next_batch, items=plan.batches[next_batch])
                    handle = workflow.start_activity(
                        BATCH_ACTIVITY, batch, result_type=BatchResult, **options,
                        cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                    )  # fmt: skip
                    running[handle] = next_batch
                    next_batch += 1
                progress.current_batches = sorted(running.values())
                done, _ = await workflow.wait(list(running), return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    self._settle(task, running.pop(task), plan, results, failed)
        except asyncio.CancelledError:
            # Cancelled: no new batch. Batches not yet picked up by a worker are withdrawn; the ones a worker is
            # writing finish (the activity sees the request and completes its batch) and are waited for.
            cancelled = True
            progress.state = "cancelling"
            for handle in running:
                handle.cancel()
            while running:
                done, _ = await workflow.wait(list(running), return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    self._settle(task, running.pop(task), plan, results, failed)
        progress.current_batches = []

        pruned = 0
        gone = {str(listing.creator["slug"]): listing.gone for listing in plan.listings if listing.gone}
        if gone and not cancelled:
            progress.state = "pruning"
            pruned = await workflow.execute_activity(PRUNE_ACTIVITY, PruneInput(job=job, gone=gone), **options)
        progress.state = "cataloguing"
        listings = _listings(plan.listings, results, pruned=not cancelled)
        chunks = sum(result.chunks for result in results)
        await workflow.execute_activity(
            CATALOG_ACTIVITY, CatalogInput(job=job, listings=listings, chunks_written=chunks), **options
        )
        report = _report(results, failed, plan.unchanged, pruned)
        report["chunks_written"] = chunks
        report["batches"] = len(plan.batches)
        report["retries"] = progress.retries
        report["workers"] = sorted({result.worker for result in results if result.worker})
        report["seconds"] = round((workflow.now() - started).total_seconds(), 3)
        if cancelled:
            report["cancelled"] = True
        progress.state = "reporting"
        await self._record(
            request, started, report, ok=not report["failed"] and not cancelled,
            error="cancelled" if cancelled else None, options=options,
        )  # fmt: skip
        progress.state = "cancelled" if cancelled else "done"
        if cancelled:
            raise CancelledError("cancelled between batches; what was written is listed in the catalog")
        return report

    def _settle(
        self,
        task: asyncio.Future[BatchResult],
        index: int,
        plan: IngestPlan,
        results: list[BatchResult],
        failed: list[FailureLine],
    ) -> None:
        progress = self._progress
        progress.batches_done += 1
        try:
            result = task.result()
        except ActivityError as exc:
            if isinstance(exc.cause, CancelledError):  # withdrawn before a worker took it (the job was cancelled)
                return
            # Gave up after its retries: its documents are report lines.
            reason = _reason(exc)
            failed.extend(FailureLine(item.document_id, f"not written: {reason}") for item in plan.batches[index])
            progress.errors = [*progress.errors[-9:], reason]
            progress.failed += len(plan.batches[index])
            return
        results.append(result)
        failed.extend(result.failed)
        progress.documents_done += len(plan.batches[index])
        progress.chunks += result.chunks
        progress.retries += result.attempt - 1
        progress.failed += len(result.failed)
        if result.worker and result.worker not in progress.workers:
            progress.workers = [*progress.workers, result.worker]

    async def _record(
        self, request: IngestRequest, started: Any, report: dict[str, Any], *, ok: bool, error: str | None,
        options: dict[str, Any],
    ) -> None:  # fmt: skip
        info = workflow.info()
        record = RunRecord(
            job=info.workflow_id, run=info.run_id, origin=request.origin, creator=request.only_creator,
            paths=list(request.paths), report=report, ok=ok, error=error, started_at=started.isoformat(),
            finished_at=workflow.now().isoformat(),
        )  # fmt: skip
        await workflow.execute_activity(REPORT_ACTIVITY, record, **options)


def _listings(listings: list[CreatorListing], results: list[BatchResult], *, pruned: bool) -> list[CreatorListing]:
    """The plan's listings with each batch's written documents (and what a failed replacement lost)."""
    merged = {
        str(listing.creator["slug"]): CreatorListing(
            creator=listing.creator,
            defines_creator=listing.defines_creator,
            documents=dict(listing.documents),
            gone=list(listing.gone) if pruned else [],
            keep_indexed=listing.keep_indexed,
        )
        for listing in listings
    }
    for result in results:
        for written in result.written:
            merged[written.creator].documents[written.entry["document_id"]] = written.entry
        for creator, lost in result.lost.items():
            merged[creator].gone.extend(lost)
    return list(merged.values())


def _report(results: list[BatchResult], failed: list[FailureLine], unchanged: int, pruned: int) -> dict[str, Any]:
    """`lorechat ingest --json`'s report, each document counted once (a retried batch reports once)."""
    return {
        "added": sum(result.added for result in results),
        "updated": sum(result.updated for result in results),
        "unchanged": unchanged,
        "pruned": pruned,
        "failed": [{"source": line.source, "error": line.error} for line in failed],
    }


@workflow.defn(name=CHANNEL_WORKFLOW)
class ChannelJob:
    """One channel's sync (a schedule's, `lorechat channels sync`, the admin route's)."""

    def __init__(self) -> None:
        self._progress = JobProgress(state="syncing")

    @workflow.query
    def progress(self) -> JobProgress:
        return self._progress

    @workflow.run
    async def run(self, request: ChannelRequest, heartbeat_seconds: float, max_attempts: int) -> ChannelResult:
        try:
            result: ChannelResult = await workflow.execute_activity(
                CHANNEL_ACTIVITY,
                request,
                result_type=ChannelResult,
                start_to_close_timeout=STEP_LIMIT,
                heartbeat_timeout=timedelta(seconds=heartbeat_seconds),
                retry_policy=retry_policy(max_attempts),
                # Cancelled, the sync stops at its next item and records what it did before the job ends.
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        except ActivityError as exc:
            self._progress.state = "failed"
            self._progress.errors = [_reason(exc)]
            raise ApplicationError(f"channel {request.channel_id}: {_reason(exc)}", non_retryable=True) from exc
        report = result.report
        self._progress.state = "done"
        self._progress.documents_done = int(report.get("added", 0)) + int(report.get("updated", 0))
        self._progress.chunks = int(report.get("chunks_written", 0))
        self._progress.failed = len(report.get("failed") or ())
        return result
