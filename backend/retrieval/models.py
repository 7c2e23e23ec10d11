"""Index-side helper types shared by ingestion and querying (the stage types are in backend/stages.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from backend.stages import SparseVector

SearchMode = Literal["hybrid", "dense", "bm25"]


@dataclass(frozen=True, slots=True)
class QueryVectors:
    dense: tuple[float, ...]
    sparse: SparseVector


@dataclass(frozen=True, slots=True)
class DocumentState:
    """What the index knows about one document: enough to decide skip / replace / prune."""

    document_id: str
    creator: str
    content_hash: str
    chunk_count: int
    # Every chunk was stored with its sentence vectors (an index ingested before they existed has none: the
    # next ingest re-embeds such documents when chunking.sentence_vectors is on).
    sentence_vectors: bool = True


@dataclass(frozen=True, slots=True)
class CreatorCounts:
    creator: str
    documents: int
    chunks: int
