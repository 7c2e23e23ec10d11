"""Starting, joining, listing, showing and cancelling jobs on Temporal (`jobs.engine: temporal`).

What a curator reads about a job comes from two places: Temporal's visibility (status, start and end, the batches
in flight with their attempts, last failure and worker) with the running workflow's `progress` query (documents
done / total, chunks, retries, errors), and, once it ended, the run report the job recorded in SQL (ingest_runs,
tagged with the job's id). Synchronous on purpose: the CLI and the admin route's worker thread call it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, overload

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from backend.errors import ErrorCode, LorechatError
from backend.settings import Settings
from pipeline.jobs.model import (
    CHANNEL_WORKFLOW,
    INGEST_WORKFLOW,
    ChannelRequest,
    IngestRequest,
    JobProgress,
    channel_job_id,
    ingest_job_id,
    require_job_id,
)

T = TypeVar("T")

# Seconds to reach the Temporal frontend before saying it cannot be reached.
CONNECT_SECONDS = 10.0
_STATUS = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "continued",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
}


def require_shared_index(settings: Settings) -> None:
    """`jobs.engine: temporal` with the embedded Edge index is refused: an Edge shard admits one process, so the
    workers (on this machine or others) could not all write it, and the serving process holds it besides."""
    if settings.jobs.engine == "temporal" and settings.index.kind == "edge":
        raise LorechatError(
            ErrorCode.invalid_input,
            "jobs.engine is 'temporal' but index.kind is 'edge': an embedded Edge shard admits one process, so "
            "ingest workers cannot write it. Set index.kind: server and index.url to a Qdrant server every worker "
            'reaches, or set jobs.engine: local (docs/deployment.md, "Ingest workers").',
        )


def uses_temporal(settings: Settings) -> bool:
    """Whether jobs run on Temporal here (after refusing the one combination that cannot work)."""
    require_shared_index(settings)
    return settings.jobs.engine == "temporal"


@dataclass(slots=True)
class JobView:
    """One job as `lorechat jobs` and /admin show it."""

    id: str
    run: str
    kind: str  # ingest, channel
    status: str  # running, completed, failed, cancelled, terminated, timed_out
    started: str | None
    ended: str | None
    state: str = ""
    documents_total: int = 0
    documents_done: int = 0
    chunks: int = 0
    current_batches: list[int] = field(default_factory=list)
    retries: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    origin: str | None = None
    target: str | None = None  # the paths, or the channel
    report: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Started:
    id: str
    run: str
    joined: bool  # a job of this id was running: this start joined it


class Jobs:
    """The jobs client: one Temporal connection per call (from synchronous code, on a loop of its own)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # ---- starting and joining -------------------------------------------------------------------------------

    def start_ingest(self, paths: list[Path], *, only_creator: str | None, prune: bool, origin: str) -> Started:
        resolved = [str(path.resolve()) for path in paths]
        request = IngestRequest(
            paths=resolved, only_creator=only_creator, prune=prune, origin=origin,
            batch_chunks=self.settings.jobs.batch_chunks, batch_documents=self.settings.jobs.batch_documents,
            parallel_batches=self.settings.jobs.parallel_batches,
        )  # fmt: skip
        memo = {"kind": "ingest", "origin": origin, "target": ", ".join(resolved)}

        async def start(client: Client) -> Started:
            request.slots = await self._slots(client)
            return await self._start(client, INGEST_WORKFLOW, request, ingest_job_id(resolved, only_creator), memo)

        return self._run(start)

    async def _slots(self, client: Client) -> int:
        """Batches the workers polling now run at once (their count × jobs.concurrency); 0 when unknown."""
        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

        request = DescribeTaskQueueRequest(
            namespace=self.settings.jobs.namespace, task_queue=TaskQueue(name=self.settings.jobs.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )  # fmt: skip
        try:
            described = await client.workflow_service.describe_task_queue(request)
        except RPCError:
            return 0
        return len({poller.identity for poller in described.pollers}) * self.settings.jobs.concurrency

    def start_channel(self, channel_id: int, *, origin: str) -> Started:
        memo = {"kind": "channel", "origin": origin, "target": f"channel {channel_id}"}
        request = ChannelRequest(channel_id=channel_id, origin=origin)
        return self._run(
            lambda client: self._start(client, CHANNEL_WORKFLOW, request, channel_job_id(channel_id), memo)
        )

    @overload
    def wait(self, job_id: str, run: str | None = None) -> dict[str, Any]: ...

    @overload
    def wait(self, job_id: str, run: str | None = None, *, stop: threading.Event | None) -> dict[str, Any] | None: ...

    def wait(
        self, job_id: str, run: str | None = None, *, stop: threading.Event | None = None
    ) -> dict[str, Any] | None:
        """The job's result (its report), once it ends; a failed or cancelled job is a LorechatError. With `stop`,
        None as soon as it is set (the job goes on)."""

        async def wait(client: Client) -> dict[str, Any] | None:
            handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(job_id, run_id=run)
            try:
                if stop is None:
                    result = await handle.result(follow_runs=True)
                else:
                    waiting = asyncio.ensure_future(handle.result(follow_runs=True))
                    while not waiting.done():
                        if stop.is_set():
                            waiting.cancel()
                            return None
                        await asyncio.wait([waiting], timeout=0.5)
                    result = waiting.result()
            except WorkflowFailureError as exc:
                cause: BaseException = exc
                while getattr(cause, "cause", None) is not None:
                    cause = getattr(cause, "cause")  # noqa: B009  # Temporal's failure chain
                raise LorechatError(ErrorCode.conflict, f"job {job_id} did not finish: {cause}") from exc
            return result if isinstance(result, dict) else {}

        return self._run(wait)

    async def _start(self, client: Client, workflow: str, request: Any, job_id: str, memo: dict[str, str]) -> Started:
        jobs = self.settings.jobs
        try:
            running = (await client.get_workflow_handle(job_id).describe()).status is WorkflowExecutionStatus.RUNNING
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            running = False
        handle = await client.start_workflow(
            workflow,
            args=[request, jobs.heartbeat_seconds, jobs.max_attempts],
            id=job_id,
            task_queue=jobs.task_queue,
            # A second start of a running job joins it; one that ended may run again.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            memo=memo,
        )
        return Started(id=job_id, run=handle.result_run_id or handle.run_id or "", joined=running)

    # ---- reading --------------------------------------------------------------------------------------------

    def list(self, *, limit: int = 20) -> list[JobView]:
        async def read(client: Client) -> list[JobView]:
            views: list[JobView] = []
            query = f"TaskQueue = '{self.settings.jobs.task_queue}'"
            async for execution in client.list_workflows(query, limit=limit):
                if execution.workflow_type not in (INGEST_WORKFLOW, CHANNEL_WORKFLOW):
                    continue
                views.append(await self._view(client, execution.id, execution.run_id, deep=False))
            return views

        return self._run(read)

    def show(self, job_id: str) -> JobView:
        job_id = require_job_id(job_id)
        return self._run(lambda client: self._view(client, job_id, None, deep=True))

    def cancel(self, job_id: str) -> JobView:
        """Ask a running job to stop: it finishes the batches in flight, records what it wrote, and ends."""
        job_id = require_job_id(job_id)

        async def cancel(client: Client) -> JobView:
            handle = client.get_workflow_handle(job_id)
            view = await self._view(client, job_id, None, deep=False)
            if view.status != "running":
                raise LorechatError(ErrorCode.conflict, f"job {job_id} is not running ({view.status})")
            await handle.cancel()
            view.state = "cancelling"
            return view

        return self._run(cancel)

    async def _view(self, client: Client, job_id: str, run: str | None, *, deep: bool) -> JobView:
        handle = client.get_workflow_handle(job_id, run_id=run)
        try:
            description = await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise LorechatError(ErrorCode.not_found, "No such job") from exc
            raise
        memo = await description.memo()
        status = _STATUS.get(description.status, "unknown") if description.status else "unknown"
        view = JobView(
            id=job_id, run=description.run_id, kind=str(memo.get("kind", "ingest")), status=status,
            started=_iso(description.start_time), ended=_iso(description.close_time),
            origin=memo.get("origin"), target=memo.get("target"),
        )  # fmt: skip
        for pending in description.raw_description.pending_activities:
            view.retries += max(0, pending.attempt - 1)
            if pending.last_failure.message:
                view.errors.append(pending.last_failure.message)
            if pending.last_worker_identity and pending.last_worker_identity not in view.workers:
                view.workers.append(pending.last_worker_identity)
        try:
            progress: JobProgress = await handle.query("progress", result_type=JobProgress)
        except Exception:  # no worker to answer (the job ended long ago, or none runs): visibility alone
            progress = JobProgress(state=status)
        view.state = progress.state if status == "running" else status
        view.documents_total, view.documents_done = progress.documents_total, progress.documents_done
        view.chunks, view.current_batches, view.failed = progress.chunks, progress.current_batches, progress.failed
        view.retries += progress.retries
        view.errors = [*progress.errors, *view.errors][-10:]
        view.workers = sorted({*progress.workers, *view.workers})
        if deep and status != "running":
            view.report = await self._recorded(job_id, description.run_id)
        return view

    async def _recorded(self, job_id: str, run: str) -> dict[str, Any] | None:
        """The run report the job recorded in SQL (ingest_runs), if it got that far."""
        from backend.curation import runs_store
        from pipeline.curator_db import with_sessions

        def read() -> dict[str, Any] | None:
            runs = with_sessions(self.settings, lambda sessions: runs_store.recent_runs(sessions, limit=200))
            for recorded in runs:
                report = recorded.report or {}
                if report.get("job") == job_id and report.get("run") == run:
                    return report
            return None

        return await asyncio.to_thread(read)

    # ---- plumbing ---------------------------------------------------------------------------------------------

    def _run(self, work: Callable[[Client], Awaitable[T]]) -> T:
        async def call() -> T:
            return await work(await connect(self.settings))

        return run_sync(call())


# Set once this process has a Temporal client: its threads make `lorechat` leave without interpreter teardown
# (pipeline/cli.py, LorechatGroup.main).
connected_once = threading.Event()


async def connect(settings: Settings) -> Client:
    jobs = settings.jobs
    connected_once.set()
    try:
        return await asyncio.wait_for(
            Client.connect(jobs.temporal_address, namespace=jobs.namespace), timeout=CONNECT_SECONDS
        )
    except (RuntimeError, OSError, TimeoutError, RPCError) as exc:
        raise LorechatError(
            ErrorCode.index_unavailable,
            f"Temporal at {jobs.temporal_address} (jobs.temporal_address) cannot be reached: {exc}",
        ) from exc


def run_sync(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to the end from synchronous code (a thread with no loop of its own)."""
    try:
        return asyncio.run(work)
    except RPCError as exc:
        raise LorechatError(ErrorCode.index_unavailable, f"Temporal refused the request: {exc.message}") from exc


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class JobIngest:
    """`Indexer.ingest`'s signature over a job (the admin route's ingest with `jobs.engine: temporal`): the ingest
    runs on the workers (started, or joined) and this waits for its report; a dry run writes nothing and runs here.
    The job records its own run (`records_runs`; a dry run, here, does not)."""

    records_runs = True

    def __init__(self, settings: Settings, local: Any, *, origin: str) -> None:
        self.settings = settings
        self.local = local
        self.origin = origin

    def ingest(
        self, paths: list[Path], *, only_creator: str | None = None, prune: bool = False, dry_run: bool = False,
        progress: Any = None,
    ) -> Any:  # fmt: skip
        from pipeline.ingest import IngestReport

        if dry_run:
            return self.local.ingest(paths, only_creator=only_creator, prune=prune, dry_run=True, progress=progress)
        jobs = Jobs(self.settings)
        started = jobs.start_ingest(paths, only_creator=only_creator, prune=prune, origin=self.origin)
        return IngestReport.from_json(jobs.wait(started.id, started.run))


def ingest_runner(settings: Settings) -> Callable[..., Any]:
    """For the composition root: given the service's retriever (and `sessions=`), what runs an admin ingest: the
    pipeline's indexer here (`jobs.engine: local`), or a job on the workers."""
    from pipeline.indexer import Indexer

    def build(retriever: Any, *, sessions: Any = None) -> Any:
        local = Indexer.from_settings(settings, retriever, sessions=sessions)
        return JobIngest(settings, local, origin="admin") if uses_temporal(settings) else local

    return build
