"""The `lorechat` command group: curator commands here; service and eval commands from their own modules.

Progress and messages go to stderr, results to stdout (`--json` for machines). Expected failures
(LorechatError) become one clear line and the error's exit code, never a traceback. Whatever came from content,
visitors, the database or argv is printed inert (pipeline/terminal.py, C1), error messages included.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from backend.errors import ErrorCode, LorechatError
from backend.settings import Settings, get_settings
from pipeline.answers_cli import answers
from pipeline.channels_cli import channels
from pipeline.creators import CreatorError
from pipeline.eval_answers_cli import eval_answers
from pipeline.eval_cli import eval_command
from pipeline.gaps_cli import gaps
from pipeline.jobs.worker import worker
from pipeline.jobs_cli import jobs
from pipeline.progress import RichProgress
from pipeline.sites_cli import sites
from pipeline.terminal import dumps, markup, safe
from service.commands import ask, doctor, serve

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


@contextmanager
def _inert_usage_errors() -> Iterator[None]:
    """Click's own messages quote argv as typed (`No such option: --…`): made inert before click prints them."""
    try:
        yield
    except click.ClickException as exc:
        exc.message = safe(exc.message)  # type: ignore[misc]  # Final in click's stubs, a plain attribute at run time
        raise


class LorechatGroup(click.Group):
    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        with _inert_usage_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with _inert_usage_errors():
                return super().invoke(ctx)
        except LorechatError as exc:
            err.print(f"[bold red]error:[/] {markup(exc.message)}")
            sys.exit(exc.exit_code)
        except CreatorError as exc:
            # A content layout problem that escaped a report (e.g. `eval --content` on a folder of no
            # creators): one line naming the folder, like a usage error, never a traceback.
            err.print(f"[bold red]error:[/] {markup(exc)}")
            sys.exit(2)


def _temporal_used() -> bool:
    """Whether this process connected to Temporal (without importing the SDK to find out)."""
    client = sys.modules.get("pipeline.jobs.client")
    return bool(client is not None and client.connected_once.is_set())


@click.group(cls=LorechatGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lorechat")
def main() -> None:
    """lorechat: a knowledge chat over creators' content.

    Settings come from config.yaml (or LORECHAT_CONFIG) and LORECHAT_* environment variables.
    """


@contextmanager
def open_index(settings: Settings) -> Iterator[Any]:
    """The embedder, store and retriever, exactly as the service builds them."""
    from backend import tracing
    from backend.retrieval.embedder import get_embedder
    from backend.retrieval.search import Retriever
    from backend.retrieval.stores import open_store

    tracing.setup(settings.tracing)  # an ingest run (or a channel sync) is a trace when tracing is on
    store = open_store(settings)
    try:
        embedder = get_embedder(settings.embedding)
        yield Retriever(embedder=embedder, store=store, settings=settings.retrieval)
    finally:
        store.close()


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--creator", "only_creator", metavar="SLUG", help="Only ingest this creator's folder.")
@click.option("--prune", is_flag=True, help="Remove indexed documents that no longer exist in their creator's folder.")
@click.option("--dry-run", is_flag=True, help="Parse and compare with the index, but write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option(
    "--detach", is_flag=True, help="jobs.engine temporal: start (or join) the job, print its id and return at once."
)
def ingest(
    paths: tuple[Path, ...], only_creator: str | None, prune: bool, dry_run: bool, as_json: bool, detach: bool
) -> None:
    """Parse, chunk, embed and index creators' content from PATHS.

    A PATH is a content folder (one sub-folder per creator, each with a creator.yaml), a creator folder,
    or single files inside a creator folder. Unchanged documents are skipped, so re-running is cheap.
    Exits 1 when any file failed; the other files are still indexed. With jobs.engine temporal the ingest is a
    durable job on `lorechat worker` processes (a second start of the same ingest joins the running one).
    """
    from pipeline.indexer import Indexer
    from pipeline.ingest import IngestReport
    from pipeline.ingest_runs import record_cli_run

    settings = get_settings()
    started = datetime.now(UTC)
    on_temporal = _on_temporal(settings)
    if detach and (dry_run or not on_temporal):
        raise click.UsageError("--detach starts a job on the workers: it needs jobs.engine: temporal, and no --dry-run")
    if not dry_run and on_temporal:  # a durable job on the workers (a dry run writes nothing: here)
        report = _ingest_job(settings, list(paths), only_creator=only_creator, prune=prune, detach=detach)
        if report is None:
            return
        _finish(report, as_json)
        return
    try:
        with open_index(settings) as retriever:
            report = Indexer.from_settings(settings, retriever).ingest(
                list(paths),
                only_creator=only_creator,
                prune=prune,
                dry_run=dry_run,
                progress=RichProgress(err, enabled=not as_json or sys.stderr.isatty()),
            )
        # In SQL for the curator dashboard and the gap inbox (an ingest through the server records itself).
        record_cli_run(
            settings, paths=list(paths), creator=only_creator, dry_run=dry_run, report=report.as_json(),
            started_at=started,
        )  # fmt: skip
    except LorechatError as exc:
        if exc.code is not ErrorCode.index_locked or settings.auth.admin_token is None:
            raise
        # `lorechat serve` holds the embedded index: let it run the ingest instead.
        from pipeline.remote import ingest_through_server

        err.print("The index is held by the running server: sending the ingest through it…")
        report = IngestReport.from_json(
            ingest_through_server(settings, list(paths), only_creator=only_creator, prune=prune, dry_run=dry_run),
            dry_run=dry_run,
        )
    _finish(report, as_json)


def _finish(report: Any, as_json: bool) -> None:
    if as_json:
        click.echo(dumps(report.as_json()))
    else:
        _print_report(report)
    sys.exit(1 if report.failed else 0)


def _on_temporal(settings: Settings) -> bool:
    from pipeline.jobs.client import uses_temporal

    return uses_temporal(settings)


def _ingest_job(settings: Settings, paths: list[Path], *, only_creator: str | None, prune: bool, detach: bool) -> Any:
    """Start the ingest as a job (or join the one running for the same paths or creator) and wait for its report;
    with --detach, only start it. The job records its own run (ingest_runs)."""
    from pipeline.ingest import IngestReport
    from pipeline.jobs.client import Jobs

    client = Jobs(settings)
    started = client.start_ingest(paths, only_creator=only_creator, prune=prune, origin="cli")
    verb = "Joined the running job" if started.joined else "Started job"
    err.print(f"{verb} {markup(started.id)} (`lorechat jobs show {markup(started.id)}` follows it).")
    if detach:
        click.echo(dumps({"job": started.id, "run": started.run, "joined": started.joined}))
        return None
    return IngestReport.from_json(client.wait(started.id, started.run))


def _print_report(report: Any) -> None:
    verb = "would be" if report.dry_run else ""
    err.print(
        f"[bold]added[/] {report.added}  [bold]updated[/] {report.updated}  "
        f"[bold]unchanged[/] {report.unchanged}  [bold]pruned[/] {report.pruned}  "
        f"[bold]failed[/] {len(report.failed)}  ({report.chunks_written} chunks written in {report.seconds:.1f}s)"
    )
    if not report.wrote_anything and not report.dry_run:
        err.print("Nothing changed: the index is up to date, nothing was written.")
    elif report.dry_run:
        err.print(f"Dry run: the changes above {verb} made; nothing was written.")
    for failure in report.failed:
        err.print(f"  [red]✗[/] {markup(failure.source)}: {markup(failure.error)}")


@main.command()
@click.argument("query", required=False)
@click.option("--creator", metavar="SLUG", help="Only search this creator's content.")
@click.option("--k", "k", type=click.IntRange(1, 100), default=None, help="How many results (default from settings).")
@click.option(
    "--mode", type=click.Choice(["hybrid", "dense", "bm25"]), default=None, help="Retriever (default hybrid)."
)
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option(
    "--batch",
    type=click.File("r", encoding="utf-8"),
    help='JSON lines of {"query", "creator"?}: one JSON line of results per query.',
)
def search(query: str | None, creator: str | None, k: int | None, mode: str | None, as_json: bool, batch: Any) -> None:
    """Search the index the way the chat does."""
    from pipeline.search_output import hit_json, print_hits, read_batch

    if (query is None) == (batch is None):
        raise click.UsageError("give either a QUERY or --batch FILE")
    settings = get_settings()
    with open_index(settings) as retriever:
        known = {entry.creator for entry in retriever.store.counts()}
        if batch is None:
            _check_creator(creator, known)
            hits = retriever.search(query, creator=creator, k=k, mode=mode)
            if as_json:
                snippet_chars = settings.retrieval.snippet_chars
                click.echo(dumps([hit_json(hit, snippet_chars) for hit in hits]))
            else:
                print_hits(out, hits, snippet_chars=settings.retrieval.snippet_chars)
            return
        failed = False
        for line_no, item in read_batch(batch):
            if isinstance(item, str):
                failed = True
                click.echo(dumps({"line": line_no, "error": item}))
                continue
            q, c = item
            if c is not None and c not in known:
                failed = True
                click.echo(dumps({"query": q, "creator": c, "error": f"unknown creator '{c}'"}))
                continue
            hits = retriever.search(q, creator=c, k=k, mode=mode)
            results = [hit_json(hit, settings.retrieval.snippet_chars) for hit in hits]
            click.echo(dumps({"query": q, "creator": c, "results": results}))
        if failed:
            sys.exit(1)


def _check_creator(creator: str | None, known: set[str]) -> None:
    if creator is not None and creator not in known:
        listing = ", ".join(sorted(known)) or "none indexed yet"
        raise LorechatError(ErrorCode.unknown_creator, f"unknown creator '{creator}' (known: {listing})")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def creators(as_json: bool) -> None:
    """List indexed creators with their document and chunk counts."""
    from pipeline.catalog_update import read_catalog
    from pipeline.curator_db import OwnEngine

    settings = get_settings()
    catalog = read_catalog(OwnEngine(settings), settings.data_dir)
    with open_index(settings) as retriever:
        counts = retriever.store.counts()
    rows = [
        {
            "slug": c.creator,
            "name": getattr(catalog.creator(c.creator), "name", c.creator),
            "documents": c.documents,
            "chunks": c.chunks,
        }
        for c in sorted(counts, key=lambda c: c.creator)
    ]
    if as_json:
        click.echo(dumps(rows))
        return
    if not rows:
        err.print("No creators indexed yet: run `lorechat ingest PATH`.")
    for row in rows:
        slug, name = markup(row["slug"]), markup(row["name"])
        out.print(f"[bold]{slug}[/]  {name}  {row['documents']} documents, {row['chunks']} chunks")


@main.command()
@click.option("--creator", metavar="SLUG", help="Delete every chunk of this creator.")
@click.option("--document", "document_id", metavar="ID", help="Delete one document (its id, e.g. ada/notes.md).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(creator: str | None, document_id: str | None, yes: bool) -> None:
    """Delete a creator's or a document's content from the index."""
    from pipeline.indexer import Indexer

    if (creator is None) == (document_id is None):
        raise click.UsageError("give exactly one of --creator or --document")
    target = f"creator '{creator}'" if creator else f"document '{document_id}'"
    if not yes and sys.stdin.isatty():
        click.confirm(f"Delete every chunk of {safe(target)}?", abort=True, err=True)
    settings = get_settings()
    with open_index(settings) as retriever:
        removed = Indexer.from_settings(settings, retriever).delete(creator=creator, document_id=document_id)
    if removed == 0:
        raise LorechatError(ErrorCode.not_found, f"nothing indexed for {target}")
    err.print(f"Deleted {removed} chunks of {markup(target)}.")


for command in (serve, ask, doctor, eval_command, eval_answers, sites, gaps, channels, answers, jobs, worker):
    main.add_command(command)


def run() -> None:
    """The program (`lorechat`, `python -m pipeline.cli`): `main`, then, in a process that used Temporal, an exit
    without interpreter teardown. The client's Rust threads can outlive the command and abort the teardown
    ("PyGILState_Release ... finalizing", temporalio/sdk-python#300: exit code -6 after a finished job), so exit
    handlers run, output is flushed and the process leaves with its exit code. Only here, never inside `main`:
    a caller of `main` in its own process (click's CliRunner in the tests) must get its SystemExit back."""
    try:
        main()
    except SystemExit as exit_:
        if not _temporal_used():
            raise
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if not isinstance(exit_.code, int | None):
            print(exit_.code, file=sys.stderr)
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    run()
