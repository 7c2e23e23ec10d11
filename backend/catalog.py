"""The catalog: creators and their documents as last ingested, written by `lorechat ingest`, read by the service.

The index holds chunks; the catalog holds what the site and the prompt need about whole creators and
documents (names, voices, titles) without scanning the index. It lives at <data_dir>/catalog.json and is
replaced atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.models import Creator


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

    def save(self, path: Path) -> None:
        payload = {
            "creators": {
                slug: {
                    "creator": asdict(entry.creator),
                    "documents": [asdict(doc) for doc in sorted(entry.documents.values(), key=_doc_order)],
                }
                for slug, entry in sorted(self.creators.items())
            }
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".catalog-", suffix=".json")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(payload, out, ensure_ascii=False, indent=1)
        os.replace(tmp, path)

    def creator(self, slug: str) -> Creator | None:
        entry = self.creators.get(slug)
        return entry.creator if entry else None


def _doc_order(doc: CatalogDocument) -> tuple[str, str]:
    return (doc.source, doc.document_id)


def catalog_path(data_dir: Path) -> Path:
    return data_dir / "catalog.json"
