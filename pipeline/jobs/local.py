"""The in-process runner (`jobs.engine: local`, the default): a job's steps (pipeline/jobs/activities.py) one after
the other in this process, for `lorechat ingest`, the admin route and channel syncs on embedded defaults.

One writer spans every batch here, so the embedder's batches stay full across documents and creators (the
distributed runner's batch activities each start their own); the steps and their order are otherwise the
distributed runner's: plan (parse, hash gate) → write → prune → catalog (one transaction, after the index writes)
→ report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from backend import tracing
from backend.stages import Creator, Document
from pipeline.jobs.activities import (
    BatchWriter,
    Failure,
    Gated,
    IngestReport,
    Parsed,
    Target,
    catalog,
    collect,
    gate,
    traced,
    write_documents,
)
from pipeline.jobs.activities import prune as prune_documents
from pipeline.progress import Progress


def run_ingest(
    target: Target,
    paths: Sequence[Path],
    *,
    only_creator: str | None = None,
    prune: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> IngestReport:
    """Creator folders or files → index and catalog, idempotently."""
    progress = progress or Progress()
    started = time.perf_counter()
    report = IngestReport(dry_run=dry_run)
    # One trace per run when tracing is on (backend/tracing.py): parsing, then each batch embedded and written.
    with tracing.span("ingest run", {"lorechat.ingest.paths": len(paths), "lorechat.ingest.dry_run": dry_run}) as run:
        with tracing.span("parse"):
            parsed = collect(paths, only_creator=only_creator, report=report, progress=progress)
        _run(target, parsed, report=report, started=started, prune=prune, dry_run=dry_run, progress=progress)
        run.set_attributes(traced(report))
    return report


def run_documents(
    target: Target,
    creator: Creator,
    documents: Sequence[Document],
    *,
    owns: Callable[[str], bool],
    keep: Collection[str] = (),
    prune: bool = False,
    failed: Sequence[Failure] = (),
    progress: Progress | None = None,
) -> IngestReport:
    """Documents made elsewhere (a channel's items) → index and catalog, through the same hash gate and batches as
    a folder. With `prune`, the indexed documents `owns` claims that are neither among `documents` nor in `keep`
    are removed; the creator's catalog profile is left as its folder defined it (or the bare slug if none did)."""
    progress = progress or Progress()
    started = time.perf_counter()
    report = IngestReport()
    report.failed.extend(failed)
    parsed = Parsed(
        creator=creator, root=None, scanned_whole_folder=prune, documents=list(documents), failed_ids=set(keep),
        owns=owns, defines_creator=False,
    )  # fmt: skip
    progress.start(files=0)
    with tracing.span("ingest documents", {tracing.CREATOR: creator.slug}) as run:
        _run(target, [parsed], report=report, started=started, prune=prune, dry_run=False, progress=progress)
        run.set_attributes(traced(report))
    return report


def _run(
    target: Target,
    parsed: list[Parsed],
    *,
    report: IngestReport,
    started: float,
    prune: bool,
    dry_run: bool,
    progress: Progress,
) -> IngestReport:
    """Plan → write → prune → catalog → report, here."""
    plan: Gated = gate(target, parsed, report=report, prune=prune, sentence_vectors=target.sentence_vectors)
    writer = BatchWriter(
        retriever=target.retriever, store=target.store, dry_run=dry_run, progress=progress,
        sentence_vectors=target.sentence_vectors,
    )  # fmt: skip
    written = write_documents(target, plan.work, writer)
    prune_documents(target, plan.gone, writer)  # after the pending writes (the writer flushes first)
    writer.flush()
    written.settle(writer)
    report.added += written.added
    report.updated += written.updated
    report.failed.extend(written.failed)
    for creator, entry in written.entries:
        plan.listing(creator).documents[entry.document_id] = entry
    for creator, document_id in written.lost:
        plan.listing(creator).gone.append(document_id)
    report.chunks_written = writer.written
    if not dry_run:
        catalog(target, plan.listings, chunks_written=writer.written)
    progress.finish()
    report.seconds = time.perf_counter() - started
    return report
