"""The ingest's catalog step: what a run learned about each creator's documents, applied in one step after the
index writes, and `delete`, which keeps index and catalog in step. The catalog (`<data_dir>/catalog.json`)
lists creators, their voices and document titles for the site, `/api/v1/creators` and the prompt."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from backend.catalog import Catalog, CatalogCreator, CatalogDocument, catalog_path
from backend.retrieval.models import DocumentState
from backend.retrieval.stores.protocol import Store
from backend.stages import Creator, Document


@dataclass(slots=True)
class Listing:
    """What one creator's catalog entry learns from a run; applied in one step after the index writes."""

    creator: Creator
    documents: dict[str, CatalogDocument] = field(default_factory=dict)  # parsed now: listed as parsed
    gone: list[str] = field(default_factory=list)  # pruned from the index: unlisted
    still_indexed: dict[str, DocumentState] = field(default_factory=dict)  # listed unless already known


def update_catalog(data_dir: Path, listings: Iterable[Listing]) -> None:
    """Apply the run's listings to the catalog; rewritten (atomically) only when something changed."""
    catalog = Catalog.load(catalog_path(data_dir))
    before = _catalog_fingerprint(catalog)
    for listing in listings:
        entry = catalog.creators.setdefault(listing.creator.slug, CatalogCreator(creator=listing.creator))
        entry.creator = listing.creator
        entry.documents.update(listing.documents)
        for document_id in listing.gone:
            entry.documents.pop(document_id, None)
        for document_id, state in listing.still_indexed.items():
            entry.documents.setdefault(document_id, _unlisted_document(state))
    if _catalog_fingerprint(catalog) != before:
        catalog.save(catalog_path(data_dir))


def delete(*, store: Store, data_dir: Path, creator: str | None = None, document_id: str | None = None) -> int:
    """Remove a creator or a document from the index and the catalog; returns the chunks removed."""
    catalog = Catalog.load(catalog_path(data_dir))
    if creator is not None:
        removed = store.delete_creator(creator)
        catalog.creators.pop(creator, None)
    elif document_id is not None:
        removed = store.delete_documents([document_id])
        for entry in catalog.creators.values():
            entry.documents.pop(document_id, None)
    else:
        raise ValueError("delete needs a creator or a document id")
    catalog.save(catalog_path(data_dir))
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


def _catalog_fingerprint(catalog: Catalog) -> object:
    return {slug: (entry.creator, tuple(sorted(entry.documents.items()))) for slug, entry in catalog.creators.items()}
