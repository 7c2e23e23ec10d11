"""The catalog in SQL: read whole with its version, changed in one transaction that bumps the version.

Every replica sharing the database reads the same rows, so an ingest on one host is seen by all of them; the
one-row version counter lets a reader notice a change with one tiny query instead of re-reading the catalog.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields, replace
from typing import Any, TypeVar

from sqlalchemy import Update, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.catalog import Catalog, CatalogCreator, CatalogDocument
from backend.stages import Creator
from backend.storage.cleaning import clean_text
from backend.storage.models import CatalogCreatorRow, CatalogDocumentRow, CatalogVersion
from backend.storage.repository import Sessions, db_errors

# Document ids per DELETE: far under SQLite's bound-parameter limit, few statements for a large prune.
_DELETE_BATCH = 500

T = TypeVar("T")


class _NothingChanged(Exception):
    """Rolls back an edit that changed nothing, so the version (and every replica's cache) stays put."""


async def catalog_version(sessions: Sessions) -> int:
    async with db_errors(), sessions() as session:
        return int(await session.scalar(select(CatalogVersion.version).where(CatalogVersion.id == 1)) or 0)


async def load_catalog(sessions: Sessions) -> tuple[int, Catalog]:
    """The catalog and the version it is at. The version is read first: a write committing meanwhile can only
    make it older than the rows, which costs one extra reload later, never a missed change."""
    async with db_errors(), sessions() as session:
        version = int(await session.scalar(select(CatalogVersion.version).where(CatalogVersion.id == 1)) or 0)
        return version, await _read(session)


async def edit_catalog(sessions: Sessions, edit: Callable[[Catalog], None]) -> bool:
    """Apply `edit` to the catalog as committed, in one transaction; True when it changed anything (and the
    version moved), False when the catalog was already so (nothing written)."""
    try:
        async with db_errors(), sessions() as session, session.begin():
            # Bumping first takes the row lock (PostgreSQL) or the write lock (SQLite): two ingests, even on
            # different hosts, queue here instead of interleaving their read-modify-write.
            await session.execute(_bump())
            before = await _read(session)
            after = Catalog(
                {slug: CatalogCreator(entry.creator, dict(entry.documents)) for slug, entry in before.creators.items()}
            )
            edit(after)
            if not await _write_difference(session, before, _storable(after)):
                raise _NothingChanged
    except _NothingChanged:
        return False
    return True


async def import_if_never_written(sessions: Sessions, catalog: Catalog) -> bool:
    """Write `catalog` only if the SQL catalog was never written (version 0); True when it was imported. Of
    replicas racing to import, the first takes the row and the others find the version moved."""
    async with db_errors(), sessions() as session, session.begin():
        taken = await session.execute(_bump().where(CatalogVersion.version == 0))
        if taken.rowcount == 0:  # type: ignore[attr-defined]
            return False
        await _write_difference(session, Catalog(), _storable(catalog))
    return True


def _bump() -> Update:
    return update(CatalogVersion).where(CatalogVersion.id == 1).values(version=CatalogVersion.version + 1)


async def _read(session: AsyncSession) -> Catalog:
    # One statement, so one snapshot on either database: a write committing meanwhile can never show a document
    # whose creator row this read did not see (READ COMMITTED gives each statement its own).
    rows = await session.execute(
        select(CatalogCreatorRow, CatalogDocumentRow)
        .outerjoin(CatalogDocumentRow, CatalogDocumentRow.creator == CatalogCreatorRow.slug)
        .order_by(CatalogCreatorRow.slug, CatalogDocumentRow.source, CatalogDocumentRow.document_id)
    )
    catalog = Catalog()
    for row, doc in rows.tuples():
        entry = catalog.creators.get(row.slug)
        if entry is None:
            creator = Creator(
                slug=row.slug, name=row.name, bio=row.bio, personality=row.personality,
                phrases=tuple(row.phrases), links=tuple(row.links),
            )  # fmt: skip
            entry = catalog.creators[row.slug] = CatalogCreator(creator=creator)
        if doc is not None:
            entry.documents[doc.document_id] = CatalogDocument(
                document_id=doc.document_id, title=doc.title, source=doc.source, url=doc.url, kind=doc.kind,
                chunks=doc.chunks, published=doc.published, duration_seconds=doc.duration_seconds,
            )  # fmt: skip
    return catalog


async def _write_difference(session: AsyncSession, before: Catalog, after: Catalog) -> bool:
    """Delete, update and insert only the rows that differ; True when there were any."""
    changed = False
    gone_creators = sorted(set(before.creators) - set(after.creators))
    for batch in _batches(gone_creators):
        await session.execute(delete(CatalogDocumentRow).where(CatalogDocumentRow.creator.in_(batch)))
        await session.execute(delete(CatalogCreatorRow).where(CatalogCreatorRow.slug.in_(batch)))
        changed = True
    for slug, entry in after.creators.items():
        old = before.creators.get(slug)
        if old is None:
            await session.execute(insert(CatalogCreatorRow).values(_creator_row(entry.creator)))
            changed = True
        elif old.creator != entry.creator:
            await session.execute(
                update(CatalogCreatorRow).where(CatalogCreatorRow.slug == slug).values(_creator_row(entry.creator))
            )
            changed = True
        old_documents = old.documents if old is not None else {}
        stale = [doc_id for doc_id, doc in old_documents.items() if entry.documents.get(doc_id) != doc]
        fresh = [doc for doc_id, doc in entry.documents.items() if old_documents.get(doc_id) != doc]
        for batch in _batches(stale):  # changed ones are deleted and inserted again, in the same transaction
            await session.execute(
                delete(CatalogDocumentRow).where(
                    CatalogDocumentRow.creator == slug, CatalogDocumentRow.document_id.in_(batch)
                )
            )
        if fresh:
            await session.execute(insert(CatalogDocumentRow), [_document_row(slug, doc) for doc in fresh])
        changed = changed or bool(stale or fresh)
    return changed


def _storable(catalog: Catalog) -> Catalog:
    """Every string as the database can hold it (I4: no NUL, no lone surrogate; titles come from curators'
    files), so the comparison with what is stored holds and an unchanged re-run writes nothing."""
    return Catalog(
        {
            clean_text(slug): CatalogCreator(
                _cleaned(entry.creator), {clean_text(key): _cleaned(doc) for key, doc in entry.documents.items()}
            )
            for slug, entry in catalog.creators.items()
        }
    )


def _cleaned(item: T) -> T:
    """A copy of the dataclass `item` with clean_text applied to its strings and tuples of strings."""
    changes: dict[str, Any] = {}
    for field in fields(item):  # type: ignore[arg-type]
        value = getattr(item, field.name)
        if isinstance(value, str):
            changes[field.name] = clean_text(value)
        elif isinstance(value, tuple):
            changes[field.name] = tuple(clean_text(part) for part in value)
    return replace(item, **changes)  # type: ignore[type-var]


def _creator_row(creator: Creator) -> dict[str, object]:
    return {
        "slug": creator.slug, "name": creator.name, "bio": creator.bio, "personality": creator.personality,
        "phrases": list(creator.phrases), "links": list(creator.links),
    }  # fmt: skip


def _document_row(slug: str, doc: CatalogDocument) -> dict[str, object]:
    return {
        "creator": slug, "document_id": doc.document_id, "title": doc.title, "source": doc.source, "url": doc.url,
        "kind": doc.kind, "chunks": doc.chunks, "published": doc.published, "duration_seconds": doc.duration_seconds,
    }  # fmt: skip


def _batches(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _DELETE_BATCH):
        yield items[start : start + _DELETE_BATCH]
