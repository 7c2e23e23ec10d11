"""Ingest: creator folders → parsed documents → chunks → embeddings → index, idempotently.

Each document carries a content hash. A document whose hash the index already holds is skipped, a changed
one has all its chunks replaced (so no stale chunk survives), and with `prune` a document that vanished from
its creator's folder loses its chunks. Running the same ingest twice therefore writes nothing.

`ingest` reads creator folders; `ingest_documents` takes documents already made elsewhere (a creator's channel,
pipeline/channels) through the same hash gate, batches and catalog step, pruning only the documents that source
owns. A folder owns every document of its creator except channels' (`<creator>/.channel-<id>/…`, a hidden folder
no content folder can hold), so neither prunes the other's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend import tracing
from backend.retrieval.search import Retriever
from backend.retrieval.stores.protocol import Store
from backend.stages import Chunk, Creator, Document
from pipeline.catalog_update import CatalogWriter, Listing, catalog_document, update_catalog
from pipeline.chunk import chunk_document
from pipeline.creators import CREATOR_FILE, CreatorError, discover_creators, load_creator
from pipeline.progress import Progress
from pipeline.sentence_vectors import with_sentence_vectors
from pipeline.sources import ParseError, content_files, parse_file

# How many chunks are embedded and upserted together: large enough to keep the embedder's batches full,
# small enough that progress moves and memory stays flat on big corpora.
WRITE_BATCH_CHUNKS = 256

# Past this many new chunks in one run, the store's segments are optimized (HNSW built) before returning.
OPTIMIZE_AFTER_CHUNKS = 5_000

# Document ids a channel writes contain this: `<creator>/.channel-<id>/<item>` (pipeline/channels/sync.py).
CHANNEL_DOCUMENTS = "/.channel-"


def folder_owns(document_id: str) -> bool:
    """Whether a folder ingest may prune this document: any of its creator's, except a channel's."""
    return CHANNEL_DOCUMENTS not in document_id


@dataclass(slots=True)
class Failure:
    source: str
    error: str


@dataclass(slots=True)
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    pruned: int = 0
    failed: list[Failure] = field(default_factory=list)
    chunks_written: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def wrote_anything(self) -> bool:
        return bool(self.added or self.updated or self.pruned)

    @classmethod
    def from_json(cls, data: dict[str, Any], *, dry_run: bool = False) -> IngestReport:
        """The report as `as_json` wrote it (a server-side ingest answers with this shape)."""
        failed = [Failure(item["source"], item["error"]) for item in data["failed"]]
        counts = {key: int(data[key]) for key in ("added", "updated", "unchanged", "pruned")}
        return cls(failed=failed, dry_run=dry_run, **counts)

    def as_json(self) -> dict[str, object]:
        """Exactly the documented keys."""
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "pruned": self.pruned,
            "failed": [{"source": f.source, "error": f.error} for f in self.failed],
        }


@dataclass(slots=True)
class _Plan:
    """One creator's parsed documents, split by what the index already has."""

    creator: Creator
    root: Path | None  # the creator folder; None for documents made elsewhere (a channel's)
    # Read whole: with prune, the owned documents it did not yield are gone.
    scanned_whole_folder: bool
    documents: list[Document] = field(default_factory=list)
    # Owned documents to keep though not yielded now (failed to parse or fetch, unchanged and not re-read).
    failed_ids: set[str] = field(default_factory=set)
    owns: Callable[[str], bool] = folder_owns
    # A folder's creator.yaml defines the creator in the catalog; a channel only names it.
    defines_creator: bool = True


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
    progress = progress or Progress()
    started = time.perf_counter()
    report = IngestReport(dry_run=dry_run)
    # One trace per run when tracing is on (backend/tracing.py): parsing, then each batch embedded and written.
    with tracing.span("ingest run", {"lorechat.ingest.paths": len(paths), "lorechat.ingest.dry_run": dry_run}) as run:
        with tracing.span("parse"):
            plans = _collect(paths, only_creator=only_creator, report=report, progress=progress)
        written = _write(
            plans, report=report, started=started, retriever=retriever, store=store, catalog=catalog,
            size_tokens=size_tokens, overlap_tokens=overlap_tokens, prune=prune, dry_run=dry_run, progress=progress,
            sentence_vectors=sentence_vectors,
        )  # fmt: skip
        run.set_attributes(_traced(written))
    return written


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
    progress = progress or Progress()
    started = time.perf_counter()
    report = IngestReport()
    report.failed.extend(failed)
    plan = _Plan(
        creator=creator, root=None, scanned_whole_folder=prune, documents=list(documents), failed_ids=set(keep),
        owns=owns, defines_creator=False,
    )  # fmt: skip
    progress.start(files=0)
    with tracing.span("ingest documents", {tracing.CREATOR: creator.slug}) as run:
        written = _write(
            [plan], report=report, started=started, retriever=retriever, store=store, catalog=catalog,
            size_tokens=size_tokens, overlap_tokens=overlap_tokens, prune=prune, dry_run=False, progress=progress,
            sentence_vectors=sentence_vectors,
        )  # fmt: skip
        run.set_attributes(_traced(written))
    return written


def _traced(report: IngestReport) -> dict[str, int]:
    """A run's counts, for its span."""
    return {
        "lorechat.ingest.added": report.added,
        "lorechat.ingest.updated": report.updated,
        "lorechat.ingest.unchanged": report.unchanged,
        "lorechat.ingest.pruned": report.pruned,
        "lorechat.ingest.failed": len(report.failed),
        "lorechat.ingest.chunks": report.chunks_written,
    }


def _write(
    plans: list[_Plan],
    *,
    report: IngestReport,
    started: float,
    retriever: Retriever,
    store: Store,
    catalog: CatalogWriter,
    size_tokens: int,
    overlap_tokens: int,
    prune: bool,
    dry_run: bool,
    progress: Progress,
    sentence_vectors: bool,
) -> IngestReport:
    """The plans' documents through the hash gate into the index, then the catalog in one step."""
    writer = BatchWriter(
        retriever=retriever, store=store, dry_run=dry_run, progress=progress, sentence_vectors=sentence_vectors
    )
    listings: list[Listing] = []

    for plan in plans:
        indexed = store.documents(plan.creator.slug)
        listing = Listing(creator=plan.creator, defines_creator=plan.defines_creator)
        listings.append(listing)
        for document in plan.documents:
            known = indexed.get(document.document_id)
            # Unchanged, unless it was stored before sentence vectors were: then it is embedded again, once.
            if (
                known is not None
                and known.content_hash == document.content_hash
                and (known.sentence_vectors or not sentence_vectors)
            ):
                report.unchanged += 1
                listing.documents[document.document_id] = catalog_document(document, known.chunk_count)
                continue
            chunks = chunk_document(
                document, size_tokens=size_tokens, overlap_tokens=overlap_tokens, window=retriever.embedder
            )
            if known is None:
                report.added += 1
            else:
                report.updated += 1
                writer.replace(document.document_id)
            writer.add(chunks)
            listing.documents[document.document_id] = catalog_document(document, len(chunks))
        if prune and plan.scanned_whole_folder:
            seen = {doc.document_id for doc in plan.documents} | plan.failed_ids
            listing.gone = sorted(
                document_id for document_id in indexed if plan.owns(document_id) and document_id not in seen
            )
            report.pruned += len(listing.gone)
            writer.remove(listing.gone)
        elif not prune:
            # Without --prune, vanished documents stay indexed; keep them listed so the catalog tells the truth.
            listing.still_indexed = indexed

    writer.flush()
    report.chunks_written = writer.written
    if writer.written >= OPTIMIZE_AFTER_CHUNKS and not dry_run:
        # Large writes land in unindexed segments; building the HNSW graph now keeps queries fast.
        store.optimize()
    if not dry_run:
        with tracing.span("catalog"):
            update_catalog(catalog, listings)  # one transaction, after the index writes
    progress.finish()
    report.seconds = time.perf_counter() - started
    return report


class BatchWriter:
    """Buffers chunks so embedding runs in full batches across documents, then writes them."""

    def __init__(
        self, *, retriever: Retriever, store: Store, dry_run: bool, progress: Progress, sentence_vectors: bool = True
    ) -> None:
        self._retriever = retriever
        self._store = store
        self._dry_run = dry_run
        self._progress = progress
        self._sentence_vectors = sentence_vectors  # chunking.sentence_vectors
        self._pending: list[Chunk] = []
        self.written = 0

    def replace(self, document_id: str) -> None:
        # Delete before re-adding: the new version may have fewer chunks, and none of the old may survive.
        self.remove([document_id])

    def remove(self, document_ids: Iterable[str]) -> None:
        ids = list(document_ids)
        if ids and not self._dry_run:
            self.flush()  # keep order: pending chunks of these documents must not be written after the delete
            self._store.delete_documents(ids)

    def add(self, chunks: Sequence[Chunk]) -> None:
        self._pending.extend(chunks)
        if len(self._pending) >= WRITE_BATCH_CHUNKS:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        if not self._dry_run:
            with tracing.span("embed chunks", {"lorechat.ingest.batch": len(batch)}):
                embedded = self._retriever.embed_chunks(batch)
                if self._sentence_vectors:
                    embedded = with_sentence_vectors(embedded, self._retriever.embedder)
            with tracing.span("index write", {"lorechat.ingest.batch": len(batch)}):
                self._store.upsert(embedded)
            self.written += len(batch)
        self._progress.chunks_done(len(batch))


def _collect(
    paths: Sequence[Path], *, only_creator: str | None, report: IngestReport, progress: Progress
) -> list[_Plan]:
    """Parse every file under the given paths, grouped by creator; failures go into the report."""
    plans: dict[Path, _Plan] = {}
    targets: list[tuple[Path, Path | None]] = []  # (creator folder, single file or None for the whole folder)
    for path in paths:
        try:
            path = path.resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a NUL in the name, a symlink loop
            report.failed.append(Failure(str(path).replace("\x00", "\\0"), f"not a usable path ({exc})"))
            continue
        if path.is_file():
            folder = _creator_folder_of(path)
            if folder is None:
                report.failed.append(Failure(str(path), "not inside a creator folder (no creator.yaml above it)"))
                continue
            targets.append((folder, path))
        elif path.is_dir():
            # A folder that holds no creator folder is one failure line in the report, like a bad file,
            # never a traceback (CLI) or a 500 (POST /api/v1/admin/ingest): I9.
            try:
                folders = discover_creators(path)
            except CreatorError as exc:
                report.failed.append(Failure(str(path), str(exc).removeprefix(f"{path}: ")))
                continue
            except OSError as exc:
                report.failed.append(Failure(str(path), f"cannot read folder: {exc.strerror or exc}"))
                continue
            targets.extend((folder, None) for folder in folders)
        else:
            report.failed.append(Failure(str(path), "no such file or folder"))

    files: list[tuple[_Plan, Path]] = []
    for folder, single in targets:
        if only_creator is not None and folder.name != only_creator:
            continue
        plan = plans.get(folder)
        if plan is None:
            try:
                creator = load_creator(folder)
            except CreatorError as exc:
                report.failed.append(Failure(_relative(folder / "creator.yaml", folder.parent), str(exc)))
                continue
            plan = plans[folder] = _Plan(creator=creator, root=folder, scanned_whole_folder=False)
        if single is None:
            try:
                found = content_files(folder)
            except OSError as exc:
                report.failed.append(Failure(folder.name, f"cannot read folder: {exc.strerror or exc}"))
                continue
            plan.scanned_whole_folder = True
            files.extend((plan, file) for file in found)
        else:
            files.append((plan, single))

    seen: set[Path] = set()
    unique: list[tuple[_Plan, Path]] = []
    for plan, file in files:  # a file named twice (or inside a folder also named) is ingested once
        if file not in seen:
            seen.add(file)
            unique.append((plan, file))
    progress.start(files=len(unique))
    for plan, file in unique:
        root = plan.root
        assert root is not None  # every plan here is a folder's
        source = _relative(file, root.parent)
        try:
            result = parse_file(file, creator=plan.creator.slug, creator_root=root)
        except ParseError as exc:
            report.failed.append(Failure(source, str(exc)))
            plan.failed_ids.add(f"{plan.creator.slug}/{file.relative_to(root).as_posix()}")
        except OSError as exc:
            report.failed.append(Failure(source, f"cannot read file: {exc.strerror or exc}"))
            plan.failed_ids.add(f"{plan.creator.slug}/{file.relative_to(root).as_posix()}")
        else:
            plan.documents.extend(result.documents)
            report.failed.extend(Failure(source, error) for error in result.errors)
        progress.file_done(source)
    if only_creator is not None and not plans and not report.failed:
        report.failed.append(Failure(only_creator, "no creator folder with this slug under the given paths"))
    return list(plans.values())


def _creator_folder_of(path: Path) -> Path | None:
    for parent in path.parents:
        if (parent / CREATOR_FILE).is_file():
            return parent
    return None


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)
