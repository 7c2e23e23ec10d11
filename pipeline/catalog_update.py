"""The ingest's catalog step: what a run learned about each creator's documents, applied in one transaction after
the index writes, and `delete`, which keeps index and catalog in step. The catalog (in the service's database,
backend/storage/catalog_store.py) lists creators, their voices and document titles for the site,
`/api/v1/creators` and the prompt, on every replica sharing that database."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from backend.catalog import Catalog, CatalogCreator, CatalogDocument
from backend.retrieval.models import DocumentState
from backend.retrieval.stores.protocol import Store
from backend.shared_catalog import adopt_legacy_catalog
from backend.stages import Creator, Document
from backend.storage import catalog_store
from backend.storage.repository import Sessions
from pipeline.curator_db import Database


@dataclass(slots=True)
class Listing:
    """What one creator's catalog entry learns from a run; applied in one step after the index writes."""

    creator: Creator
    documents: dict[str, CatalogDocument] = field(default_factory=dict)  # parsed now: listed as parsed
    gone: list[str] = field(default_factory=list)  # pruned from the index: unlisted
    still_indexed: dict[str, DocumentState] = field(default_factory=dict)  # listed unless already known
    # A folder's creator.yaml defines the creator's profile; a channel only names the creator (kept if known).
    defines_creator: bool = True


@dataclass(frozen=True, slots=True)
class CatalogWriter:
    """Where the catalog is written: the service's database, and the data dir whose legacy catalog.json (of an
    earlier release) is imported first if the database's catalog was never written."""

    database: Database
    data_dir: Path

    def edit(self, change: Callable[[Catalog], None]) -> bool:
        """Apply `change` to the catalog in one transaction; True when it changed anything."""

        async def work(sessions: Sessions) -> bool:
            await adopt_legacy_catalog(sessions, self.data_dir)
            return await catalog_store.edit_catalog(sessions, change)

        return self.database.run(work)


def read_catalog(database: Database, data_dir: Path) -> Catalog:
    """The catalog as committed (the legacy catalog.json of an earlier release imported first, if never written)."""

    async def work(sessions: Sessions) -> Catalog:
        await adopt_legacy_catalog(sessions, data_dir)
        return (await catalog_store.load_catalog(sessions))[1]

    return database.run(work)


def update_catalog(catalog: CatalogWriter, listings: Iterable[Listing]) -> bool:
    """Apply the run's listings to the catalog, in one transaction; nothing is written (and no replica reloads)
    when nothing changed. True when something did."""
    listings = list(listings)

    def apply(listed: Catalog) -> None:
        for listing in listings:
            entry = listed.creators.setdefault(listing.creator.slug, CatalogCreator(creator=listing.creator))
            if listing.defines_creator:
                entry.creator = listing.creator
            entry.documents.update(listing.documents)
            for document_id in listing.gone:
                entry.documents.pop(document_id, None)
            for document_id, state in listing.still_indexed.items():
                entry.documents.setdefault(document_id, _unlisted_document(state))

    return catalog.edit(apply)


def delete(*, store: Store, catalog: CatalogWriter, creator: str | None = None, document_id: str | None = None) -> int:
    """Remove a creator or a document from the index and the catalog; returns the chunks removed."""
    if creator is not None:
        removed = store.delete_creator(creator)

        def unlist(listed: Catalog) -> None:
            listed.creators.pop(creator, None)

    elif document_id is not None:
        removed = store.delete_documents([document_id])

        def unlist(listed: Catalog) -> None:
            for entry in listed.creators.values():
                entry.documents.pop(document_id, None)

    else:
        raise ValueError("delete needs a creator or a document id")
    catalog.edit(unlist)
    return removed


def catalog_document(document: Document, chunks: int) -> CatalogDocument:
    ends = [block.end_seconds for block in document.blocks if block.end_seconds is not None]
    return CatalogDocument(
        document_id=document.document_id,
        title=document.title,
        source=document.source,
        url=document.url,
        kind=document.kind,
        chunks=chunks,
        published=document.published,
        duration_seconds=max(ends) if ends else None,
    )


def _unlisted_document(state: DocumentState) -> CatalogDocument:
    return CatalogDocument(
        document_id=state.document_id,
        title=state.document_id.rsplit("/", 1)[-1],
        source=state.document_id,
        url=None,
        kind="text",
        chunks=state.chunk_count,
    )
