"""The stage types, in the order data flows: the glossary both sides share (pipeline writes, backend reads).

- Creator        — a person whose content we hold; one folder with a creator.yaml.
- Block          — a unit a parser keeps whole when it can: a heading, a paragraph, or a transcript cue.
- Document       — one parsed source (file or JSON line): its blocks plus identity and a content hash.
- Chunk          — a token-bounded run of blocks from one document, the unit we embed and retrieve.
- EmbeddedChunk  — a Chunk with its dense and sparse (BM25) vectors, as the index stores it.
- Hit            — a retrieved chunk with its score, as search returns it.

The pipeline imports these from here; the backend never imports the pipeline (tests/test_architecture.py).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

BlockKind = Literal["heading", "paragraph", "cue"]
# What a document is, set by the parser that read it (the site labels it; transcripts count as talks).
DocumentKind = Literal["article", "page", "pdf", "transcript", "text", "record"]

# Fixed namespace so point ids are the same on every machine and every run.
POINT_NAMESPACE = uuid.UUID("6f1c2f4e-6d1b-4b7e-9a52-5c3f0b3e7a11")


@dataclass(frozen=True, slots=True)
class Creator:
    slug: str
    name: str
    bio: str = ""
    personality: str = ""
    phrases: tuple[str, ...] = ()
    links: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Block:
    text: str
    kind: BlockKind = "paragraph"
    # Heading depth (1 for "#"); 0 for non-headings.
    level: int = 0
    # Transcript cues only.
    start_seconds: float | None = None
    end_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Document:
    creator: str
    # Stable identity: "<creator>/<path relative to the creator folder>" for files, the given id for JSON lines.
    document_id: str
    # Where it came from, as shown to curators and visitors (relative path, or "file.jsonl#L12").
    source: str
    title: str
    blocks: tuple[Block, ...]
    url: str | None = None
    published: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: DocumentKind = "text"

    @property
    def text(self) -> str:
        return "\n\n".join(block.text for block in self.blocks)

    @property
    def content_hash(self) -> str:
        """Changes whenever anything we index about the document changes."""
        digest = hashlib.sha256()
        for part in (self.creator, self.title, self.url or "", self.published or ""):
            digest.update(part.encode())
            digest.update(b"\x00")
        for block in self.blocks:
            digest.update(f"{block.kind}|{block.level}|{block.start_seconds}|{block.end_seconds}|".encode())
            digest.update(block.text.encode())
            digest.update(b"\x00")
        return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Chunk:
    creator: str
    document_id: str
    source: str
    title: str
    url: str | None
    # 0-based order of the chunk inside its document.
    position: int
    text: str
    document_hash: str
    # Heading trail ("Intro > Setup") the chunk sits under, if any.
    heading: str = ""
    start_seconds: float | None = None
    end_seconds: float | None = None
    published: str | None = None

    @property
    def chunk_id(self) -> str:
        """Deterministic point id: the same document position always lands on the same point."""
        return str(uuid.uuid5(POINT_NAMESPACE, f"{self.document_id}#{self.position}"))


@dataclass(frozen=True, slots=True)
class SparseVector:
    indices: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class EmbeddedChunk:
    chunk: Chunk
    dense: tuple[float, ...]
    sparse: SparseVector
    # The chunk's sentences embedded at ingest (backend/grounding/sentences.py packs them), stored with it so that
    # answering never embeds source sentences; None: not computed (older index, or switched off).
    sentence_vectors: str | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    """A retrieved chunk. `score` is the fused (RRF) score in hybrid mode, the raw score otherwise."""

    chunk_id: str
    creator: str
    document_id: str
    source: str
    title: str
    url: str | None
    text: str
    score: float
    position: int = 0
    heading: str = ""
    start_seconds: float | None = None
    end_seconds: float | None = None
    # As stored with the chunk at ingest; the service moves them into its sentence cache and drops them here.
    sentence_vectors: str | None = field(default=None, repr=False, compare=False)


def format_timestamp(seconds: float) -> str:
    """A transcript position as visitors read it: m:ss, or h:mm:ss from an hour on."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
