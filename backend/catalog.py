"""The catalog: creators and their documents as last ingested, written by `lorechat ingest`, read by the service.

The index holds chunks; the catalog holds what the site and the prompt need about whole creators and
documents (names, voices, titles) without scanning the index. It lives at <data_dir>/catalog.json and is
replaced atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
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


class CatalogFile:
    """The catalog as last written, re-read when the file changes (an ingest by another process or host,
    e.g. against a Qdrant server), checked at most every CHECK_SECONDS. `catalog` stays the same object:
    the chat service and the site hold it, and a reload swaps its contents in place."""

    CHECK_SECONDS = 2.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self.catalog = Catalog()
        self._mtime: int | None = None
        self._checked = 0.0
        self.refresh(force=True)

    def current(self) -> Catalog:
        if time.monotonic() - self._checked >= self.CHECK_SECONDS:
            self.refresh()
        return self.catalog

    def refresh(self, *, force: bool = False) -> None:
        self._checked = time.monotonic()
        try:
            mtime: int | None = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if not force and mtime == self._mtime:
            return
        try:
            self.catalog.creators = Catalog.load(self.path).creators
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Keep serving the last good catalog; the file is replaced atomically, so this means real damage.
            logging.getLogger(__name__).error("cannot read %s, keeping the previous catalog: %s", self.path, exc)
            return
        self._mtime = mtime


def _doc_order(doc: CatalogDocument) -> tuple[str, str]:
    return (doc.source, doc.document_id)


def catalog_path(data_dir: Path) -> Path:
    return data_dir / "catalog.json"
