"""The work of an ingest, step by step: the one code path both runners call.

1. **Plan**: parse what the paths hold (`collect`) and compare each document with the index (`gate`, the hash
   gate): unchanged documents are only listed; new and changed ones become `Work`; with prune, the owned
   documents that vanished are `gone`.
2. **Write** a batch of documents (`write_documents`): chunk, embed and upsert through a `BatchWriter`, a
   changed document's old chunks deleted first. A document that cannot be chunked or embedded is a report line
   of its own (`Failure`); the batch goes on.
3. **Prune** the vanished documents (`prune`).
4. **Catalog**: what the run learned, in one transaction after the index writes (`catalog`).
5. **Report**: the run's counts (`IngestReport`), recorded in SQL by pipeline/ingest_runs.py.

pipeline/jobs/local.py runs these in this process (`jobs.engine: local`, the default: `lorechat ingest`, the
admin route, channel syncs); pipeline/jobs/temporal_activities.py wraps them as Temporal activities that any
number of `lorechat worker` processes run (`jobs.engine: temporal`), one batch per activity.

Each document carries a content hash. A document whose hash the index already holds is skipped, a changed
one has all its chunks replaced (so no stale chunk survives), and with `prune` a document that vanished from
its creator's folder loses its chunks. Point ids are derived from document ids and positions, so writing a
document again (a retried batch) lands on the same points: nothing is duplicated.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend import tracing
from backend.catalog import CatalogDocument
from backend.errors import LorechatError
from backend.retrieval.models import DocumentState
from backend.retrieval.search import Retriever
from backend.retrieval.stores.protocol import Store
from backend.stages import Chunk, Creator, Document, EmbeddedChunk
from pipeline.catalog_update import CatalogWriter, Listing, catalog_document, update_catalog
from pipeline.chunk import chunk_document
from pipeline.creators import CREATOR_FILE, CreatorError, discover_creators, load_creator
from pipeline.progress import Progress
from pipeline.sentence_vectors import with_sentence_vectors
from pipeline.sources import ParseError, content_files, parse_file

log = logging.getLogger(__name__)

# How many chunks are embedded and upserted together: large enough to keep the embedder's batches full,
# small enough that progress moves and memory stays flat on big corpora.
WRITE_BATCH_CHUNKS = 256

# Past this many new chunks in one run, the store's segments are optimized (HNSW built) before returning.
OPTIMIZE_AFTER_CHUNKS = 5_000

# Faults that say nothing about the document being written (the index or the database unreachable, the disk, the
# memory): they end the step, for its runner to retry, instead of becoming the document's report line.
TRANSIENT: tuple[type[BaseException], ...] = (LorechatError, OSError, MemoryError)

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
        report = cls(failed=failed, dry_run=dry_run, **counts)
        report.chunks_written = int(data.get("chunks_written", 0))
        report.seconds = float(data.get("seconds", 0.0))
        return report

    def as_json(self) -> dict[str, object]:
        """Exactly the documented keys."""
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "pruned": self.pruned,
            "failed": [{"source": f.source, "error": f.error} for f in self.failed],
        }


@dataclass(frozen=True, slots=True)
class Target:
    """What the work writes to and how it cuts chunks: the retriever (its embedder and store), the catalog (None:
    evaluation sets, which have none) and the chunking budgets. Built once per process (pipeline/indexer.py)."""

    retriever: Retriever
    catalog: CatalogWriter | None
    size_tokens: int
    overlap_tokens: int
    sentence_vectors: bool = True

    @property
    def store(self) -> Store:
        return self.retriever.store

    def chunks(self, document: Document) -> list[Chunk]:
        return chunk_document(
            document, size_tokens=self.size_tokens, overlap_tokens=self.overlap_tokens, window=self.retriever.embedder
        )

    def require_catalog(self) -> CatalogWriter:
        if self.catalog is None:
            raise ValueError("this indexer has no catalog: build it with Indexer.from_settings")
        return self.catalog


# ---- 1. plan ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Parsed:
    """One creator's parsed documents, before the hash gate."""

    creator: Creator
    root: Path | None  # the creator folder; None for documents made elsewhere (a channel's)
    # Read whole: with prune, the owned documents it did not yield are gone.
    scanned_whole_folder: bool
    documents: list[Document] = field(default_factory=list)
    # The file each document came from (folders only): a worker elsewhere parses it again to write it.
    files: dict[str, Path] = field(default_factory=dict)
    # Owned documents to keep though not yielded now (failed to parse or fetch, unchanged and not re-read).
    failed_ids: set[str] = field(default_factory=set)
    owns: Callable[[str], bool] = folder_owns
    # A folder's creator.yaml defines the creator in the catalog; a channel only names it.
    defines_creator: bool = True


@dataclass(slots=True)
class Work:
    """A document to write; `replaces`: its indexed version's chunks go first."""

    document: Document
    replaces: bool
    file: Path | None = None
    root: Path | None = None


@dataclass(slots=True)
class Gated:
    """The plan: each creator's catalog listing (unchanged documents already in it), the documents to write, and
    what vanished (with prune)."""

    listings: list[Listing] = field(default_factory=list)
    work: list[Work] = field(default_factory=list)
    gone: dict[str, list[str]] = field(default_factory=dict)

    def listing(self, slug: str) -> Listing:
        return next(listing for listing in self.listings if listing.creator.slug == slug)


def gate(
    target: Target, parsed: Sequence[Parsed], *, report: IngestReport, prune: bool, sentence_vectors: bool
) -> Gated:
    """The hash gate: each parsed document against what the index holds for its creator."""
    plan = Gated()
    for creator in parsed:
        indexed = target.store.documents(creator.creator.slug)
        listing = Listing(creator=creator.creator, defines_creator=creator.defines_creator)
        plan.listings.append(listing)
        for document in creator.documents:
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
            file = creator.files.get(document.document_id)
            plan.work.append(Work(document, replaces=known is not None, file=file, root=creator.root))
        if prune and creator.scanned_whole_folder:
            seen = {doc.document_id for doc in creator.documents} | creator.failed_ids
            listing.gone = sorted(
                document_id for document_id in indexed if creator.owns(document_id) and document_id not in seen
            )
            report.pruned += len(listing.gone)
            if listing.gone:
                plan.gone[creator.creator.slug] = listing.gone
        elif not prune:
            # Without --prune, vanished documents stay indexed; keep them listed so the catalog tells the truth.
            listing.still_indexed = indexed
    return plan


def collect(
    paths: Sequence[Path], *, only_creator: str | None, report: IngestReport, progress: Progress
) -> list[Parsed]:
    """Parse every file under the given paths, grouped by creator; failures go into the report."""
    plans: dict[Path, Parsed] = {}
    targets: list[tuple[Path, Path | None]] = []  # (creator folder, single file or None for the whole folder)
    for path in paths:
        try:
            path = path.resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a NUL in the name, a symlink loop
            report.failed.append(Failure(str(path).replace("\x00", "\\0"), f"not a usable path ({exc})"))
            continue
        if path.is_file():
            folder = creator_folder_of(path)
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

    files: list[tuple[Parsed, Path]] = []
    for folder, single in targets:
        if only_creator is not None and folder.name != only_creator:
            continue
        plan = plans.get(folder)
        if plan is None:
            try:
                creator = load_creator(folder)
            except CreatorError as exc:
                report.failed.append(Failure(relative(folder / "creator.yaml", folder.parent), str(exc)))
                continue
            plan = plans[folder] = Parsed(creator=creator, root=folder, scanned_whole_folder=False)
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
    unique: list[tuple[Parsed, Path]] = []
    for plan, file in files:  # a file named twice (or inside a folder also named) is ingested once
        if file not in seen:
            seen.add(file)
            unique.append((plan, file))
    progress.start(files=len(unique))
    for plan, file in unique:
        root = plan.root
        assert root is not None  # every plan here is a folder's
        documents, failures = parse_one(file, creator=plan.creator.slug, root=root)
        if documents is None:
            plan.failed_ids.add(file_document_id(plan.creator.slug, file, root))
        else:
            plan.documents.extend(documents)
            plan.files.update((document.document_id, file) for document in documents)
        report.failed.extend(failures)
        progress.file_done(relative(file, root.parent))
    if only_creator is not None and not plans and not report.failed:
        report.failed.append(Failure(only_creator, "no creator folder with this slug under the given paths"))
    return list(plans.values())


def parse_one(file: Path, *, creator: str, root: Path) -> tuple[list[Document] | None, list[Failure]]:
    """One content file's documents and its report lines; None when the file could not be read or parsed at all
    (its indexed version, if any, is kept)."""
    source = relative(file, root.parent)
    try:
        result = parse_file(file, creator=creator, creator_root=root)
    except ParseError as exc:
        return None, [Failure(source, str(exc))]
    except OSError as exc:
        return None, [Failure(source, f"cannot read file: {exc.strerror or exc}")]
    return list(result.documents), [Failure(source, error) for error in result.errors]


def file_document_id(creator: str, file: Path, root: Path) -> str:
    return f"{creator}/{file.relative_to(root).as_posix()}"


def creator_folder_of(path: Path) -> Path | None:
    for parent in path.parents:
        if (parent / CREATOR_FILE).is_file():
            return parent
    return None


def relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


# ---- 2. write -----------------------------------------------------------------------------------------------


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
        # Documents whose chunks could not be embedded (report lines; see Written.settle).
        self.failures: list[Failure] = []
        self.failed_ids: list[str] = []

    @property
    def pending(self) -> int:
        """Chunks added but not yet written."""
        return len(self._pending)

    def replace(self, document_id: str) -> None:
        # Delete before re-adding: the new version may have fewer chunks, and none of the old may survive.
        self.remove([document_id])

    def remove(self, document_ids: Iterable[str]) -> None:
        ids = list(document_ids)
        if ids and not self._dry_run:
            self.flush()  # keep order: pending chunks of these documents must not be written after the delete
            self._store.delete_documents(ids)

    def add(self, chunks: Sequence[Chunk]) -> None:
        if self.failed_ids:
            chunks = [chunk for chunk in chunks if chunk.document_id not in self.failed_ids]
        self._pending.extend(chunks)
        if len(self._pending) >= WRITE_BATCH_CHUNKS:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        if not self._dry_run and batch:
            with tracing.span("embed chunks", {"lorechat.ingest.batch": len(batch)}):
                try:
                    embedded = self._embed(batch)
                except TRANSIENT:
                    raise
                except Exception:  # one bad document among the batch's: embed them one by one to find it
                    log.warning("a batch of %d chunks failed to embed; embedding its documents alone", len(batch))
                    embedded, batch = self._embed_alone(batch)
            with tracing.span("index write", {"lorechat.ingest.batch": len(batch)}):
                self._store.upsert(embedded)
            self.written += len(batch)
        self._progress.chunks_done(len(batch))

    def _embed(self, chunks: Sequence[Chunk]) -> list[EmbeddedChunk]:
        embedded = self._retriever.embed_chunks(chunks)
        if self._sentence_vectors:
            embedded = with_sentence_vectors(embedded, self._retriever.embedder)
        return embedded

    def _embed_alone(self, batch: list[Chunk]) -> tuple[list[EmbeddedChunk], list[Chunk]]:
        """Each document's chunks embedded on their own: the ones that fail are `failures`, the rest written."""
        by_document: dict[str, list[Chunk]] = {}
        for chunk in batch:
            by_document.setdefault(chunk.document_id, []).append(chunk)
        embedded: list[EmbeddedChunk] = []
        kept: list[Chunk] = []
        for document_id, chunks in by_document.items():
            try:
                embedded.extend(self._embed(chunks))
            except TRANSIENT:
                raise
            except Exception as exc:
                log.warning("document %s could not be embedded", document_id, exc_info=True)
                self.failures.append(Failure(chunks[0].source, f"could not be embedded ({type(exc).__name__}: {exc})"))
                self.failed_ids.append(document_id)
                # None of it stays: chunks of it an earlier flush wrote go too, and later ones are dropped.
                self._store.delete_documents([document_id])
                continue
            kept.extend(chunks)
        return embedded, kept


@dataclass(slots=True)
class Written:
    """What `write_documents` wrote (or, in a dry run, would have)."""

    added: int = 0
    updated: int = 0
    entries: list[tuple[str, CatalogDocument]] = field(default_factory=list)  # (creator, its catalog entry)
    failed: list[Failure] = field(default_factory=list)
    failed_ids: list[str] = field(default_factory=list)
    # Replaced documents whose new version failed after the old chunks went: unlisted from the catalog too.
    lost: list[tuple[str, str]] = field(default_factory=list)  # (creator, document id)
    replaced: set[str] = field(default_factory=set)

    def settle(self, writer: BatchWriter) -> None:
        """After the writer's last flush: the documents it could not embed become report lines, not written."""
        failed = set(writer.failed_ids) - set(self.failed_ids)
        if not failed:
            return
        self.failed.extend(f for f, i in zip(writer.failures, writer.failed_ids, strict=True) if i in failed)
        self.failed_ids.extend(i for i in writer.failed_ids if i in failed)
        kept = []
        for creator, entry in self.entries:
            if entry.document_id not in failed:
                kept.append((creator, entry))
            elif entry.document_id in self.replaced:
                self.updated -= 1
                self.lost.append((creator, entry.document_id))
            else:
                self.added -= 1
        self.entries = kept


def write_documents(
    target: Target,
    work: Iterable[Work],
    writer: BatchWriter,
    *,
    after_each: Callable[[int], None] | None = None,
    into: Written | None = None,
) -> Written:
    """Chunk each document and hand its chunks to `writer` (which embeds and upserts them in full batches), a
    replaced document's old chunks deleted first. A document that cannot be chunked is a report line of its own
    (its indexed version stays); transient faults (the index or the database unreachable) propagate, for the
    runner to retry. `after_each(i)` runs after the i-th document was handed over; `into` collects the outcome
    as it goes (a caller reporting progress mid-batch)."""
    done = into if into is not None else Written()
    for position, item in enumerate(work):
        document = item.document
        try:
            chunks = target.chunks(document)
        except TRANSIENT:
            raise
        except Exception as exc:  # a document the chunker cannot take: its own report line, never the run's end
            log.warning("document %s could not be chunked", document.document_id, exc_info=True)
            done.failed.append(Failure(document.source, f"could not be chunked ({type(exc).__name__}: {exc})"))
            done.failed_ids.append(document.document_id)
            continue
        if item.replaces:
            done.updated += 1
            done.replaced.add(document.document_id)
            writer.replace(document.document_id)
        else:
            done.added += 1
        writer.add(chunks)
        done.entries.append((document.creator, catalog_document(document, len(chunks))))
        if after_each is not None:
            after_each(position)
    return done


# ---- 3. prune, 4. catalog ---------------------------------------------------------------------------------


def prune(target: Target, gone: dict[str, list[str]], writer: BatchWriter | None = None) -> int:
    """Remove the documents that vanished from their creators' folders (after pending writes); how many."""
    ids = [document_id for documents in gone.values() for document_id in documents]
    if writer is not None:
        writer.remove(ids)
    elif ids:
        target.store.delete_documents(ids)
    return len(ids)


def catalog(target: Target, listings: Iterable[Listing], *, chunks_written: int) -> bool:
    """After the index writes: build the ANN index over a large write, then the catalog in one transaction."""
    if chunks_written >= OPTIMIZE_AFTER_CHUNKS:
        # Large writes land in unindexed segments; building the HNSW graph now keeps queries fast.
        target.store.optimize()
    with tracing.span("catalog"):
        return update_catalog(target.require_catalog(), listings)  # one transaction, after the index writes


def traced(report: IngestReport) -> dict[str, int]:
    """A run's counts, for its span."""
    return {
        "lorechat.ingest.added": report.added,
        "lorechat.ingest.updated": report.updated,
        "lorechat.ingest.unchanged": report.unchanged,
        "lorechat.ingest.pruned": report.pruned,
        "lorechat.ingest.failed": len(report.failed),
        "lorechat.ingest.chunks": report.chunks_written,
    }


# ---- JSON for the steps that run elsewhere (pipeline/jobs/model.py) ----------------------------------------


def creator_json(creator: Creator) -> dict[str, Any]:
    return dataclasses.asdict(creator)


def creator_from_json(data: dict[str, Any]) -> Creator:
    return Creator(
        slug=data["slug"],
        name=data["name"],
        bio=data.get("bio", ""),
        personality=data.get("personality", ""),
        phrases=tuple(data.get("phrases", ())),
        links=tuple(data.get("links", ())),
    )


def entry_json(entry: CatalogDocument) -> dict[str, Any]:
    return dataclasses.asdict(entry)


def entry_from_json(data: dict[str, Any]) -> CatalogDocument:
    return CatalogDocument(**data)


def listing_from_json(
    creator: dict[str, Any],
    *,
    defines_creator: bool,
    documents: dict[str, dict[str, Any]],
    gone: list[str],
    still_indexed: dict[str, DocumentState],
) -> Listing:
    return Listing(
        creator=creator_from_json(creator),
        documents={document_id: entry_from_json(entry) for document_id, entry in documents.items()},
        gone=list(gone),
        still_indexed=still_indexed,
        defines_creator=defines_creator,
    )
