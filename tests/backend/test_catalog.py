"""The catalog file: atomic saves, and a running service picking up another process's ingest."""

from __future__ import annotations

from pathlib import Path

from backend.catalog import Catalog, CatalogCreator, CatalogDocument, CatalogFile
from backend.stages import Creator


def catalog_with(*slugs: str) -> Catalog:
    catalog = Catalog()
    for slug in slugs:
        document = CatalogDocument(
            document_id=f"{slug}/a.md", title="A", source=f"{slug}/a.md", url=None, kind="article", chunks=2
        )
        creator = Creator(slug=slug, name=slug.title(), phrases=("hello",))
        catalog.creators[slug] = CatalogCreator(creator=creator, documents={document.document_id: document})
    return catalog


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    catalog_with("ada", "bea").save(path)
    loaded = Catalog.load(path)
    assert sorted(loaded.creators) == ["ada", "bea"]
    assert loaded.creator("ada") == Creator(slug="ada", name="Ada", phrases=("hello",))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_catalog_file_reloads_in_place_when_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    watched = CatalogFile(path)
    watched.CHECK_SECONDS = 0.0
    held = watched.current()
    assert held.creators == {}

    catalog_with("ada").save(path)
    assert watched.current() is held
    assert list(held.creators) == ["ada"]

    path.write_text("{not json", encoding="utf-8")
    assert list(watched.current().creators) == ["ada"]  # a damaged file keeps the last good catalog
