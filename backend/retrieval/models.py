"""Index-side types shared by ingestion and querying (see pipeline/models.py for the glossary)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.models import Chunk

SearchMode = Literal["hybrid", "dense", "bm25"]


@dataclass(frozen=True, slots=True)
class SparseVector:
    indices: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class EmbeddedChunk:
    chunk: Chunk
    dense: tuple[float, ...]
    sparse: SparseVector


@dataclass(frozen=True, slots=True)
class QueryVectors:
    dense: tuple[float, ...]
    sparse: SparseVector


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


@dataclass(frozen=True, slots=True)
class DocumentState:
    """What the index knows about one document: enough to decide skip / replace / prune."""

    document_id: str
    creator: str
    content_hash: str
    chunk_count: int


@dataclass(frozen=True, slots=True)
class CreatorCounts:
    creator: str
    documents: int
    chunks: int
