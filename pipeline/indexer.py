"""The indexer: one object, built from settings, that owns what an ingest writes to.

It holds the retriever (the one embedder and the store, shared with the service's search), the chunking
budgets and the catalog writer (the service's database, listing creators and documents). The CLI, the admin
route (through the composition root), the benches, the eval command and the tests all build it the same way
instead of wiring the pieces by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from backend.retrieval.search import Retriever
from backend.retrieval.stores.protocol import Store
from backend.settings import ChunkingSettings, Settings
from backend.stages import Creator, Document
from backend.storage.repository import Sessions
from pipeline.catalog_update import CatalogWriter, delete
from pipeline.chunk import chunk_document
from pipeline.curator_db import OwnEngine, ServiceLoop
from pipeline.jobs.activities import OPTIMIZE_AFTER_CHUNKS, BatchWriter, Failure, IngestReport, Target
from pipeline.jobs.local import run_documents, run_ingest
from pipeline.progress import Progress


@dataclass(frozen=True, slots=True)
class Indexer:
    retriever: Retriever
    chunking: ChunkingSettings
    # None: only `write_documents` (evaluation sets, which have no catalog).
    catalog: CatalogWriter | None

    @classmethod
    def from_settings(cls, settings: Settings, retriever: Retriever, *, sessions: Sessions | None = None) -> Indexer:
        """The catalog goes to settings' database: through `sessions` on the service's loop when given (an
        ingest in the server's worker thread), else through an engine of its own (the CLI, tests)."""
        database = ServiceLoop(sessions) if sessions is not None else OwnEngine(settings)
        return cls(retriever=retriever, chunking=settings.chunking, catalog=CatalogWriter(database, settings.data_dir))

    def _catalog(self) -> CatalogWriter:
        if self.catalog is None:
            raise ValueError("this indexer has no catalog: build it with Indexer.from_settings")
        return self.catalog

    @property
    def store(self) -> Store:
        return self.retriever.store

    @property
    def target(self) -> Target:
        """What a job's steps write to (pipeline/jobs/activities.py)."""
        return Target(
            retriever=self.retriever, catalog=self.catalog, size_tokens=self.chunking.size_tokens,
            overlap_tokens=self.chunking.overlap_tokens, sentence_vectors=self.chunking.sentence_vectors,
        )  # fmt: skip

    def ingest(
        self,
        paths: Sequence[Path],
        *,
        only_creator: str | None = None,
        prune: bool = False,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Creator folders or files → index and catalog, idempotently, in this process (pipeline/ingest.py,
        pipeline/jobs/local.py)."""
        self._catalog()
        return run_ingest(
            self.target, paths, only_creator=only_creator, prune=prune, dry_run=dry_run, progress=progress
        )

    def ingest_documents(
        self,
        creator: Creator,
        documents: Sequence[Document],
        *,
        owns: Callable[[str], bool],
        keep: Collection[str] = (),
        prune: bool = False,
        failed: Sequence[Failure] = (),
    ) -> IngestReport:
        """Documents made elsewhere (a channel's items) → index and catalog, through ingest's hash gate; with
        `prune`, the documents `owns` claims that are neither given nor kept are removed (pipeline/ingest.py)."""
        self._catalog()
        return run_documents(self.target, creator, documents, owns=owns, keep=keep, prune=prune, failed=failed)

    def delete(self, *, creator: str | None = None, document_id: str | None = None) -> int:
        return delete(store=self.store, catalog=self._catalog(), creator=creator, document_id=document_id)

    def write_documents(self, documents: Iterable[Document]) -> int:
        """Chunk, embed and upsert already-parsed documents with ingest's own batch writer, without the hash gate
        or the catalog (evaluation sets); returns the chunks written. Sentence vectors only when ranking reads
        them (late interaction: retrieval.sentence_weight > 0); they triple the time to build a set's index."""
        ranks_by_sentences = self.retriever.settings.sentence_weight > 0
        writer = BatchWriter(
            retriever=self.retriever, store=self.store, dry_run=False, progress=Progress(),
            sentence_vectors=self.chunking.sentence_vectors and ranks_by_sentences,
        )  # fmt: skip
        for document in documents:
            writer.add(
                chunk_document(
                    document,
                    size_tokens=self.chunking.size_tokens,
                    overlap_tokens=self.chunking.overlap_tokens,
                    window=self.retriever.embedder,
                )
            )
        writer.flush()
        if writer.written >= OPTIMIZE_AFTER_CHUNKS:
            self.store.optimize()  # large writes land in unindexed segments: build the ANN index now
        return writer.written
