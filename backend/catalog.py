"""The catalog: creators and their documents as last ingested, written by `lorechat ingest`, read by the service.

The index holds chunks; the catalog holds what the site and the prompt need about whole creators and
documents (names, voices, titles) without scanning the index. These dataclasses are its in-memory shape; it
lives in SQL (backend/storage/catalog_store.py), shared by every replica, and the service keeps a cached copy
(backend/shared_catalog.py). `Catalog.load` reads the JSON file of earlier releases, for the one-time import.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from backend.stages import Creator


@dataclass(frozen=True, slots=True)
class CatalogDocument:
    document_id: str
    title: str
    source: str
    url: str | None
    # "article", "page", "pdf", "transcript", "text" or "record" (a JSON line).
    kind: str
    chunks: int
    published: str | None = None
    # Transcripts: length of the talk in seconds, from the last cue.
    duration_seconds: float | None = None


@dataclass(slots=True)
class CatalogCreator:
    creator: Creator
    documents: dict[str, CatalogDocument] = field(default_factory=dict)


@dataclass(slots=True)
class Catalog:
    creators: dict[str, CatalogCreator] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Catalog:
        """The legacy <data_dir>/catalog.json (empty when there is none)."""
        if not path.is_file():
            return cls()
        raw = json.loads(path.read_text(encoding="utf-8"))
        catalog = cls()
        for slug, entry in raw.get("creators", {}).items():
            profile = entry["creator"]
            creator = Creator(
                slug=slug,
                name=profile["name"],
                bio=profile.get("bio", ""),
                personality=profile.get("personality", ""),
                phrases=tuple(profile.get("phrases", ())),
                links=tuple(profile.get("links", ())),
            )
            documents = {doc["document_id"]: CatalogDocument(**doc) for doc in entry.get("documents", [])}
            catalog.creators[slug] = CatalogCreator(creator=creator, documents=documents)
        return catalog

    def creator(self, slug: str) -> Creator | None:
        entry = self.creators.get(slug)
        return entry.creator if entry else None


def legacy_catalog_path(data_dir: Path) -> Path:
    """Where releases before the SQL catalog kept it; read once, to import it (backend/shared_catalog.py)."""
    return data_dir / "catalog.json"
