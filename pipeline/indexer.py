"""The indexer: one object, built from settings, that owns what an ingest writes to.

It holds the retriever (the one embedder and the store, shared with the service's search), the chunking
budgets and the data dir whose catalog lists creators and documents. The CLI, the admin route (through the
composition root), the benches, the eval command and the tests all build it the same way instead of wiring
the pieces by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from backend.retrieval.search import Retriever
from backend.retrieval.stores.protocol import Store
from backend.settings import ChunkingSettings, Settings
from backend.stages import Document
from pipeline.catalog_update import delete
from pipeline.chunk import chunk_document
from pipeline.ingest import OPTIMIZE_AFTER_CHUNKS, BatchWriter, IngestReport, ingest
from pipeline.progress import Progress


@dataclass(frozen=True, slots=True)
class Indexer:
    retriever: Retriever
    data_dir: Path
    chunking: ChunkingSettings

    @classmethod
    def from_settings(cls, settings: Settings, retriever: Retriever) -> Indexer:
        return cls(retriever=retriever, data_dir=settings.data_dir, chunking=settings.chunking)

    @property
    def store(self) -> Store:
        return self.retriever.store

    def ingest(
        self,
        paths: Sequence[Path],
        *,
        only_creator: str | None = None,
        prune: bool = False,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Creator folders or files → index and catalog, idempotently (see pipeline/ingest.py)."""
        return ingest(
            paths,
            retriever=self.retriever,
            store=self.store,
            data_dir=self.data_dir,
            size_tokens=self.chunking.size_tokens,
            overlap_tokens=self.chunking.overlap_tokens,
            only_creator=only_creator,
            prune=prune,
            dry_run=dry_run,
            progress=progress,
        )

    def delete(self, *, creator: str | None = None, document_id: str | None = None) -> int:
        return delete(store=self.store, data_dir=self.data_dir, creator=creator, document_id=document_id)

    def write_documents(self, documents: Iterable[Document]) -> int:
        """Chunk, embed and upsert already-parsed documents with ingest's own batch writer, without the hash gate
        or the catalog (evaluation sets); returns the chunks written."""
        writer = BatchWriter(retriever=self.retriever, store=self.store, dry_run=False, progress=Progress())
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
