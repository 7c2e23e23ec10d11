"""The index contract: one Store interface, implemented by the embedded Edge shard and the Qdrant server."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from backend.errors import ErrorCode, LorechatError
from backend.retrieval.models import CreatorCounts, DocumentState, QueryVectors, SearchMode
from backend.stages import Chunk, EmbeddedChunk, Hit

# Payload keys, written by ingestion and read by retrieval. Changing one means re-ingesting.
DENSE_VECTOR = "dense"
SPARSE_VECTOR = "bm25"
TENANT_FIELD = "creator"


class Store(Protocol):
    """Synchronous on purpose: both engines answer in milliseconds; async callers use a worker thread."""

    def ensure_collection(self, *, dense_size: int, embedder_id: str) -> None:
        """Create the collection if missing; refuse (index_mismatch) if it was built by another embedder."""

    def upsert(self, chunks: Sequence[EmbeddedChunk]) -> None: ...

    def delete_documents(self, document_ids: Sequence[str]) -> int:
        """Remove every chunk of these documents; returns how many chunks went."""

    def delete_creator(self, creator: str) -> int: ...

    def documents(self, creator: str | None = None) -> dict[str, DocumentState]:
        """Every indexed document (optionally of one creator), keyed by document id."""

    def search(
        self,
        query: QueryVectors,
        *,
        k: int,
        mode: SearchMode,
        creator: str | None = None,
        prefetch_limit: int = 50,
    ) -> list[Hit]:
        """Top-k chunks; `creator` scopes inside the engine's query (tenant filter), never afterwards."""

    def counts(self) -> list[CreatorCounts]: ...

    def points(self) -> int:
        """How many chunks the index holds; cheap (no scan), so readiness checks can call it."""

    def optimize(self) -> None:
        """Build the ANN index over what was just written (after large writes); a no-op where the engine does
        it on its own (a Qdrant server)."""

    def close(self) -> None: ...


# --- Shared by both adapters, so the payload schema and the read-back live in one place. ---

# Recorded with the index (Edge: a sidecar file; server: collection metadata) and checked on open.
INDEX_SCHEMA_VERSION = 1
# The only payload keys documents() needs: reading whole chunks to list documents would be wasteful.
DOCUMENT_FIELDS = ("document_id", TENANT_FIELD, "document_hash")
# Reciprocal-rank-fusion constant: 60 is the value from the original RRF paper and damps rank-1 spikes.
RRF_K = 60


def chunk_payload(chunk: Chunk) -> dict[str, Any]:
    """Every Chunk field plus its point id, as stored alongside the vectors."""
    payload = dataclasses.asdict(chunk)
    payload["chunk_id"] = chunk.chunk_id
    return payload


def hit_from_payload(point_id: object, score: float, payload: Mapping[str, Any]) -> Hit:
    return Hit(
        chunk_id=str(payload.get("chunk_id") or point_id),
        creator=payload["creator"],
        document_id=payload["document_id"],
        source=payload.get("source", ""),
        title=payload.get("title", ""),
        url=payload.get("url"),
        text=payload.get("text", ""),
        score=float(score),
        position=int(payload.get("position", 0)),
        heading=payload.get("heading", ""),
        start_seconds=payload.get("start_seconds"),
        end_seconds=payload.get("end_seconds"),
    )


def aggregate_documents(payloads: Iterable[Mapping[str, Any]]) -> dict[str, DocumentState]:
    """Fold chunk payloads (DOCUMENT_FIELDS) into one DocumentState per document."""
    states: dict[str, DocumentState] = {}
    for payload in payloads:
        document_id = payload["document_id"]
        seen = states.get(document_id)
        states[document_id] = DocumentState(
            document_id=document_id,
            creator=payload[TENANT_FIELD],
            content_hash=payload["document_hash"],
            chunk_count=(seen.chunk_count if seen else 0) + 1,
        )
    return states


def count_by_creator(documents: Mapping[str, DocumentState]) -> list[CreatorCounts]:
    totals: dict[str, tuple[int, int]] = {}
    for state in documents.values():
        docs, chunks = totals.get(state.creator, (0, 0))
        totals[state.creator] = (docs + 1, chunks + state.chunk_count)
    return [CreatorCounts(creator=c, documents=d, chunks=n) for c, (d, n) in sorted(totals.items())]


# torch and onnx run the same fp32 weights and give the same vectors (cosine > 0.9999, tested), so an index
# built by one is read by the other: switching the default to ONNX needs no re-ingest.
_FP32_RUNTIMES = frozenset({"torch", "onnx"})


def same_vectors(built_with: object, embedder_id: str) -> bool:
    """Whether an index built by embedder `built_with` can be queried (and extended) by `embedder_id`."""
    if not isinstance(built_with, str):
        return False
    if built_with == embedder_id:
        return True
    built_model, _, built_runtime = built_with.rpartition("/")
    model, _, runtime = embedder_id.rpartition("/")
    return built_model == model and {built_runtime, runtime} <= _FP32_RUNTIMES


def mismatch_error(*, where: str, built_with: str, wanted: str) -> LorechatError:
    return LorechatError(
        ErrorCode.index_mismatch,
        f"The index at {where} was built with embedder {built_with!r}, but this process embeds with "
        f"{wanted!r}; their vectors are not comparable. Either set embedding.backend (and "
        f"embedding.model_path) back to what built the index, or re-ingest into a fresh data dir "
        f"(or a new index path / collection).",
        extra={"index_embedder": built_with, "embedder": wanted},
    )
