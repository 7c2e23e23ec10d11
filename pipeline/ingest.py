"""Ingest: creator folders → parsed documents → chunks → embeddings → index, idempotently.

Each document carries a content hash. A document whose hash the index already holds is skipped, a changed
one has all its chunks replaced (so no stale chunk survives), and with `prune` a document that vanished from
its creator's folder loses its chunks. Running the same ingest twice therefore writes nothing.

`ingest` reads creator folders; `ingest_documents` takes documents already made elsewhere (a creator's channel,
pipeline/channels) through the same hash gate, batches and catalog step, pruning only the documents that source
owns. A folder owns every document of its creator except channels' (`<creator>/.channel-<id>/…`, a hidden folder
no content folder can hold), so neither prunes the other's.

The steps (plan, write a batch, prune, catalog, report) are pipeline/jobs/activities.py's; these two functions
run them in this process (pipeline/jobs/local.py). With `jobs.engine: temporal` the same steps run as a durable
workflow on `lorechat worker` processes (pipeline/jobs/).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from backend.retrieval.search import Retriever
from backend.retrieval.stores.protocol import Store
from backend.stages import Creator, Document
from pipeline.catalog_update import CatalogWriter
from pipeline.jobs.activities import (
    CHANNEL_DOCUMENTS,
    OPTIMIZE_AFTER_CHUNKS,
    WRITE_BATCH_CHUNKS,
    BatchWriter,
    Failure,
    IngestReport,
    Target,
    folder_owns,
)
from pipeline.jobs.local import run_documents, run_ingest
from pipeline.progress import Progress

__all__ = [
    "CHANNEL_DOCUMENTS",
    "OPTIMIZE_AFTER_CHUNKS",
    "WRITE_BATCH_CHUNKS",
    "BatchWriter",
    "Failure",
    "IngestReport",
    "folder_owns",
    "ingest",
    "ingest_documents",
]


def ingest(
    paths: Sequence[Path],
    *,
    retriever: Retriever,
    store: Store,
    catalog: CatalogWriter,
    size_tokens: int,
    overlap_tokens: int,
    only_creator: str | None = None,
    prune: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    sentence_vectors: bool = True,
) -> IngestReport:
    target = _target(retriever, store, catalog, size_tokens, overlap_tokens, sentence_vectors)
    return run_ingest(target, paths, only_creator=only_creator, prune=prune, dry_run=dry_run, progress=progress)


def ingest_documents(
    creator: Creator,
    documents: Sequence[Document],
    *,
    retriever: Retriever,
    store: Store,
    catalog: CatalogWriter,
    size_tokens: int,
    overlap_tokens: int,
    owns: Callable[[str], bool],
    keep: Collection[str] = (),
    prune: bool = False,
    failed: Sequence[Failure] = (),
    progress: Progress | None = None,
    sentence_vectors: bool = True,
) -> IngestReport:
    """Documents made elsewhere (a channel's items) → index and catalog, through the same hash gate and batches as
    `ingest`. With `prune`, the indexed documents `owns` claims that are neither among `documents` nor in `keep`
    are removed; the creator's catalog profile is left as its folder defined it (or the bare slug if none did)."""
    target = _target(retriever, store, catalog, size_tokens, overlap_tokens, sentence_vectors)
    return run_documents(
        target, creator, documents, owns=owns, keep=keep, prune=prune, failed=failed, progress=progress
    )


def _target(
    retriever: Retriever,
    store: Store,
    catalog: CatalogWriter,
    size_tokens: int,
    overlap_tokens: int,
    sentence_vectors: bool,
) -> Target:
    if store is not retriever.store:
        raise ValueError("ingest writes to its retriever's own store")
    return Target(
        retriever=retriever, catalog=catalog, size_tokens=size_tokens, overlap_tokens=overlap_tokens,
        sentence_vectors=sentence_vectors,
    )  # fmt: skip
