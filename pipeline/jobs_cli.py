"""`lorechat jobs`: the ingest jobs on Temporal (`jobs.engine: temporal`), as a curator reads them.

`list` shows recent jobs (state, progress, workers, start and end), `show ID` one job with its batches in flight,
retries, errors and, once it ended, its run report; `cancel ID` stops a running job between batches (what it
wrote stays, listed in the catalog). Everything printed came from content, Temporal or the database: printed
inert (pipeline/terminal.py, C1). Job ids pass the id gate (pipeline/jobs/model.py) before they reach Temporal.
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console

from backend.errors import ErrorCode, LorechatError
from backend.settings import Settings, get_settings
from pipeline.terminal import dumps, markup

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def _jobs(settings: Settings) -> Any:
    from pipeline.jobs.client import Jobs, require_shared_index

    if settings.jobs.engine != "temporal":
        raise LorechatError(
            ErrorCode.not_found,
            "jobs.engine is 'local': ingests run in the process that asks them and have no jobs to list "
            "(set jobs.engine: temporal to run them on workers)",
        )
    require_shared_index(settings)
    return Jobs(settings)


def _progress(job: dict[str, Any]) -> str:
    total = job["documents_total"]
    done = f"{job['documents_done']}/{total} documents" if total else "0 documents"
    return f"{done}, {job['chunks']} chunks"


def _line(job: dict[str, Any]) -> str:
    ended = f" → {job['ended'][:19]}" if job.get("ended") else ""
    workers = f"  workers: {', '.join(job['workers'])}" if job.get("workers") else ""
    return (
        f"[bold]{markup(job['id'])}[/]  {markup(job['state'])}  {_progress(job)}  "
        f"retries {job['retries']}  failed {job['failed']}  {markup((job.get('started') or '')[:19])}{markup(ended)}"
        f"{markup(workers)}"
    )


@click.group()
def jobs() -> None:
    """Ingest jobs on Temporal (jobs.engine: temporal): list them, show one, cancel one."""


@jobs.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="How many jobs.")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
def list_jobs(limit: int, as_json: bool) -> None:
    """Recent jobs, newest first: state, documents done / total, chunks, retries, failures, workers, times."""
    views = [view.as_json() for view in _jobs(get_settings()).list(limit=limit)]
    if as_json:
        click.echo(dumps(views))
        return
    if not views:
        err.print("No jobs yet: start one with `lorechat ingest PATH` (jobs.engine: temporal).")
    for view in views:
        out.print(_line(view))


@jobs.command("show")
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def show(job_id: str, as_json: bool) -> None:
    """One job: its state, progress, batches in flight, retries, errors, workers and, once ended, its report."""
    view = _jobs(get_settings()).show(job_id).as_json()
    if as_json:
        click.echo(dumps(view))
        return
    out.print(_line(view))
    out.print(
        f"  {markup(view['kind'])} of {markup(view.get('target') or '?')}, asked by {markup(view.get('origin') or '?')}"
    )
    if view["current_batches"]:
        out.print(f"  batches in flight: {', '.join(str(b) for b in view['current_batches'])}")
    for error in view["errors"]:
        out.print(f"  [red]error:[/] {markup(error)}")
    report = view.get("report")
    if report:
        counts = "  ".join(f"{key} {report.get(key, 0)}" for key in ("added", "updated", "unchanged", "pruned"))
        out.print(
            f"  report: {counts}  failed {len(report.get('failed') or ())}  chunks {report.get('chunks_written', 0)}"
        )
        for failure in report.get("failed") or ():
            out.print(f"  [red]✗[/] {markup(failure.get('source', ''))}: {markup(failure.get('error', ''))}")


@jobs.command("cancel")
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def cancel(job_id: str, as_json: bool) -> None:
    """Stop a running job between batches: no new batch starts, the ones in flight finish, nothing is pruned,
    and what was written is listed in the catalog and recorded."""
    view = _jobs(get_settings()).cancel(job_id).as_json()
    if as_json:
        click.echo(dumps(view))
        return
    err.print(f"Cancelling {markup(view['id'])}: it stops after the batches in flight ({_progress(view)} so far).")
