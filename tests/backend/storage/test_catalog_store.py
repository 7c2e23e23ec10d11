"""The catalog in SQL on both databases: one-transaction edits that bump the version only when something changed,
replicas (two engines on one database) seeing each other's writes, and the one-time legacy catalog.json import."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.catalog import Catalog, CatalogCreator, CatalogDocument
from backend.shared_catalog import SharedCatalog, adopt_legacy_catalog
from backend.stages import Creator
from backend.storage import catalog_store
from backend.storage.db import create_engine, session_factory
from backend.storage.repository import Sessions
from tests.backend.storage.conftest import settings_for


def document(slug: str, name: str, *, chunks: int = 2) -> CatalogDocument:
    return CatalogDocument(
        document_id=f"{slug}/{name}", title=name.title(), source=f"{slug}/{name}", url=None, kind="transcript",
        chunks=chunks, published="2024-05-01", duration_seconds=69.5,
    )  # fmt: skip


def creator(slug: str) -> Creator:
    return Creator(slug=slug, name=slug.title(), bio="Bakes.", phrases=("hello", "friends"), links=("https://x.test",))


def listing(slug: str, *names: str) -> Callable[[Catalog], None]:
    """An edit that lists `slug` with exactly these documents."""

    def change(catalog: Catalog) -> None:
        documents = {doc.document_id: doc for doc in (document(slug, name) for name in names)}
        catalog.creators[slug] = CatalogCreator(creator(slug), documents)

    return change


@pytest.fixture
async def catalog_sessions(sessions: Sessions, engine: AsyncEngine) -> AsyncIterator[Sessions]:
    """The `sessions` of each database, on an empty catalog that was never written."""
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM catalog_documents"))
        await connection.execute(text("DELETE FROM catalog_creators"))
        await connection.execute(text("UPDATE catalog_version SET version = 0"))
    yield sessions


async def test_an_edit_round_trips_and_bumps_the_version_once(catalog_sessions: Sessions) -> None:
    assert await catalog_store.edit_catalog(catalog_sessions, listing("ada", "salt.md", "talk.srt"))
    version, catalog = await catalog_store.load_catalog(catalog_sessions)
    assert version == 1
    assert catalog.creator("ada") == creator("ada")
    assert catalog.creators["ada"].documents == {
        "ada/salt.md": document("ada", "salt.md"),
        "ada/talk.srt": document("ada", "talk.srt"),
    }


async def test_an_edit_that_changes_nothing_writes_nothing(catalog_sessions: Sessions) -> None:
    await catalog_store.edit_catalog(catalog_sessions, listing("ada", "salt.md"))
    assert not await catalog_store.edit_catalog(catalog_sessions, listing("ada", "salt.md"))
    assert await catalog_store.catalog_version(catalog_sessions) == 1


async def test_an_edit_replaces_changed_and_drops_removed_rows(catalog_sessions: Sessions) -> None:
    await catalog_store.edit_catalog(catalog_sessions, listing("ada", "salt.md", "oven.txt"))
    await catalog_store.edit_catalog(catalog_sessions, listing("bea", "rye.md"))

    def change(catalog: Catalog) -> None:
        entry = catalog.creators["ada"]
        entry.creator = Creator(slug="ada", name="Ada Baker")
        entry.documents.pop("ada/oven.txt")
        entry.documents["ada/salt.md"] = document("ada", "salt.md", chunks=7)
        del catalog.creators["bea"]

    assert await catalog_store.edit_catalog(catalog_sessions, change)
    version, catalog = await catalog_store.load_catalog(catalog_sessions)
    assert version == 3
    assert list(catalog.creators) == ["ada"]
    assert catalog.creator("ada") == Creator(slug="ada", name="Ada Baker")
    assert catalog.creators["ada"].documents == {"ada/salt.md": document("ada", "salt.md", chunks=7)}


async def test_strings_a_database_refuses_are_cleaned_and_a_rerun_writes_nothing(catalog_sessions: Sessions) -> None:
    dirty = CatalogDocument(
        document_id="ada/odd.pdf", title="Odd\x00 title \ud800", source="ada/odd.pdf", url=None, kind="pdf", chunks=1
    )

    def change(catalog: Catalog) -> None:
        catalog.creators["ada"] = CatalogCreator(Creator(slug="ada", name="Ada\x00"), {dirty.document_id: dirty})

    assert await catalog_store.edit_catalog(catalog_sessions, change)
    _, catalog = await catalog_store.load_catalog(catalog_sessions)
    assert catalog.creators["ada"].creator.name == "Ada"
    assert catalog.creators["ada"].documents["ada/odd.pdf"].title == "Odd title "
    assert not await catalog_store.edit_catalog(catalog_sessions, change)


async def test_a_replica_sees_another_replicas_write_without_restart(
    catalog_sessions: Sessions, database_url: str, tmp_path: Path
) -> None:
    other = create_engine(settings_for(database_url, tmp_path))  # another host's engine on the same database
    try:
        shared = SharedCatalog(session_factory(other))
        await shared.refresh(force=True)
        held = await shared.current()
        assert held.creators == {}

        await catalog_store.edit_catalog(catalog_sessions, listing("ada", "salt.md"))
        assert (await shared.current()).creators == {}, "checked again before CHECK_SECONDS passed"
        shared.CHECK_SECONDS = 0.0
        assert await shared.current() is held  # swapped in place: the chat service and the site hold it
        assert list(held.creators) == ["ada"]
    finally:
        await other.dispose()


def write_legacy(data_dir: Path, slug: str) -> None:
    """A catalog.json as releases before the SQL catalog wrote it."""
    entry = {
        "creator": {"slug": slug, "name": "Ada", "bio": "", "personality": "warm", "phrases": ["hi"], "links": []},
        "documents": [{
            "document_id": f"{slug}/salt.md", "title": "Salt", "source": f"{slug}/salt.md", "url": None,
            "kind": "article", "chunks": 3, "published": None, "duration_seconds": None,
        }],
    }  # fmt: skip
    (data_dir / "catalog.json").write_text(json.dumps({"creators": {slug: entry}}), encoding="utf-8")


async def test_a_legacy_catalog_file_is_imported_once(catalog_sessions: Sessions, tmp_path: Path) -> None:
    write_legacy(tmp_path, "ada")
    assert await adopt_legacy_catalog(catalog_sessions, tmp_path)
    _, catalog = await catalog_store.load_catalog(catalog_sessions)
    assert catalog.creator("ada") == Creator(slug="ada", name="Ada", personality="warm", phrases=("hi",))
    assert catalog.creators["ada"].documents["ada/salt.md"].chunks == 3

    # Emptied later by the curator, the catalog is still "written": the old file never comes back.
    await catalog_store.edit_catalog(catalog_sessions, lambda catalog: catalog.creators.clear())
    assert not await adopt_legacy_catalog(catalog_sessions, tmp_path)
    assert (await catalog_store.load_catalog(catalog_sessions))[1].creators == {}


async def test_a_legacy_file_is_ignored_once_sql_was_written(catalog_sessions: Sessions, tmp_path: Path) -> None:
    await catalog_store.edit_catalog(catalog_sessions, listing("bea", "rye.md"))
    write_legacy(tmp_path, "ada")
    assert not await adopt_legacy_catalog(catalog_sessions, tmp_path)
    assert list((await catalog_store.load_catalog(catalog_sessions))[1].creators) == ["bea"]


async def test_a_damaged_legacy_file_is_left_alone(catalog_sessions: Sessions, tmp_path: Path) -> None:
    (tmp_path / "catalog.json").write_text("{not json", encoding="utf-8")
    assert not await adopt_legacy_catalog(catalog_sessions, tmp_path)  # logged; the service starts on SQL alone
    assert await catalog_store.catalog_version(catalog_sessions) == 0
