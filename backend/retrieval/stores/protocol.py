"""The index contract: one Store interface, implemented by the embedded Edge shard and the Qdrant server."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from backend.errors import ErrorCode, LorechatError
from backend.retrieval.models import CreatorCounts, DocumentState, QueryVectors, SearchMode
from backend.stages import EmbeddedChunk, Hit

log = logging.getLogger(__name__)

# Payload keys, written by ingestion and read by retrieval. Changing one means re-ingesting.
DENSE_VECTOR = "dense"
SPARSE_VECTOR = "bm25"
TENANT_FIELD = "creator"


# Reciprocal-rank-fusion constant: 60 is the value from the original RRF paper and damps rank-1 spikes.
RRF_K = 60
# DBSF weights are whole-number prefetch repeats, each a search: at most this many per retriever.
MAX_DBSF_REPEATS = 4


@dataclass(frozen=True, slots=True)
class Fusion:
    """How hybrid mode fuses its dense and BM25 candidates (both adapters, same meaning).

    rrf: sum over lists of 1 / (k - 1 + rank / weight) (Qdrant's weighted RRF: a weight divides its list's ranks);
    dbsf: Qdrant's distribution-based score fusion (each list's scores normalised by mean ± 3 standard deviations,
    then summed). Qdrant's DBSF takes no weights, so a list's weight is given by sending its prefetch that many
    times (`prefetch_repeats`): DBSF sums every list, so a list sent three times counts three times.
    zscore: the two lists fetched as plain searches and fused here (`zscore_fuse`), the same over both adapters.
    """

    method: Literal["rrf", "dbsf", "zscore"] = "rrf"
    rrf_k: int = RRF_K
    dense_weight: float = 1.0
    bm25_weight: float = 1.0

    def weights(self, *, has_terms: bool) -> list[float] | None:
        """Per-prefetch RRF weights (dense first), or None for plain RRF."""
        if self.dense_weight == self.bm25_weight == 1.0:
            return None
        return [self.dense_weight, self.bm25_weight] if has_terms else [self.dense_weight]

    def prefetch_repeats(self, *, has_terms: bool) -> tuple[int, int]:
        """How many times hybrid sends the dense and the BM25 prefetch: once each for RRF (its weights are its
        own); for DBSF, the weights' ratio in the nearest whole numbers up to MAX_DBSF_REPEATS (1.5 → 3 and 2).
        Without query terms there is no BM25 list, and one dense list fuses to its own order."""
        if not has_terms:
            return 1, 0
        if self.method != "dbsf" or self.dense_weight == self.bm25_weight:
            return 1, 1
        ratio = self.dense_weight / self.bm25_weight
        counts = range(1, MAX_DBSF_REPEATS + 1)
        # Nearest ratio; among equals the fewest prefetches (2:2 is 1:1).
        return min(((d, b) for d in counts for b in counts), key=lambda db: (abs(db[0] / db[1] - ratio), sum(db)))


DEFAULT_FUSION = Fusion()


def zscore_fuse(
    dense: Sequence[tuple[float, str]], bm25: Sequence[tuple[float, str]], fusion: Fusion
) -> list[tuple[float, str]]:
    """Hybrid's two candidate lists, (score, chunk id) each, fused by weighted z-scores: each list's scores
    standardised (minus its mean, over its standard deviation), weighted (`dense_weight`, `bm25_weight`) and summed.
    A chunk missing from one list gets that list's lowest standardised score (it ranked below every candidate there),
    where DBSF gives it nothing, three deviations below the mean: a chunk dense ranks well and BM25 did not fetch
    is not sunk by a list it was never measured in. Measured across the five eval sets (BENCHMARKS.md, "Retrieval
    quality"): an opt-in. Returned best first, ties by chunk id."""
    fused: dict[str, float] = {}
    lists = [(dense, fusion.dense_weight), (bm25, fusion.bm25_weight)]
    for candidates, weight in lists:
        if not candidates:
            continue
        scores = [score for score, _ in candidates]
        mean = sum(scores) / len(scores)
        deviation = (sum((score - mean) ** 2 for score in scores) / len(scores)) ** 0.5
        standard = {chunk: (score - mean) / deviation if deviation > 0 else 0.0 for score, chunk in candidates}
        lowest = min(standard.values())
        for chunk in {chunk for other, _ in lists for _, chunk in other} - standard.keys():
            standard[chunk] = lowest
        for chunk, value in standard.items():
            fused[chunk] = fused.get(chunk, 0.0) + weight * value
    return sorted(((score, chunk) for chunk, score in fused.items()), key=rank_key)


class Store(Protocol):
    """Synchronous on purpose: both engines answer in milliseconds; async callers use a worker thread."""

    # Bumped when a write through this store has finished (search_cache.py: a search read at another revision is
    # stale). `sees_every_write`: no other process writes this index, so the revision alone says what changed.
    revision: int
    sees_every_write: bool

    def ensure_collection(self, *, dense_size: int, embedder_id: str, chunking: str = "") -> None:
        """Create the collection if missing; refuse (index_mismatch) if it was built by another embedder, or its
        chunks were fitted to another window (`chunking`, see search.chunking_id; see check_chunking)."""

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
        fusion: Fusion = DEFAULT_FUSION,
        tie_margin: int = 0,
        documents: Sequence[str] | None = None,
    ) -> list[Hit]:
        """Top-k chunks; `creator` scopes inside the engine's query (tenant filter), never afterwards, and so do
        `documents` (only chunks of these document ids: a curated answer's linked sources). The engine
        is asked for `k + tie_margin` candidates, so the k best in `rank_key` order are the same every time even
        when scores tie at the k-th place; an adapter may return the extra candidates too (callers order and cut)."""

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
SENTENCE_VECTORS_FIELD = "sentence_vectors"
# A small flag beside the (large) vectors, so listing documents can tell which were stored with them.
SENTENCE_VECTORS_STORED = "sentence_vectors_stored"
DOCUMENT_FIELDS = ("document_id", TENANT_FIELD, "document_hash", SENTENCE_VECTORS_STORED)


def chunk_payload(item: EmbeddedChunk) -> dict[str, Any]:
    """Every Chunk field plus its point id (and its sentence vectors when computed), stored alongside the vectors."""
    payload = dataclasses.asdict(item.chunk)
    payload["chunk_id"] = item.chunk.chunk_id
    if item.sentence_vectors is not None:
        payload[SENTENCE_VECTORS_FIELD] = item.sentence_vectors
        payload[SENTENCE_VECTORS_STORED] = True
    return payload


def rank_key(scored: tuple[float, str]) -> tuple[float, str]:
    """(score, chunk id) → sort key: best first, equal scores by chunk id, so ties always fall the same way."""
    score, chunk_id = scored
    return -score, chunk_id


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
        sentence_vectors=payload.get(SENTENCE_VECTORS_FIELD),
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
            sentence_vectors=(seen.sentence_vectors if seen else True) and bool(payload.get(SENTENCE_VECTORS_STORED)),
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


def check_chunking(*, where: str, recorded: object, wanted: str) -> None:
    """An index records how its chunks were fitted to the model's window. Another record → re-ingest.

    An index from before the record (none stored) is still served, with a warning: its vectors are
    comparable, only the tails of its longest chunks were never embedded.
    """
    if not wanted or recorded == wanted:
        return
    if not recorded:
        log.warning(
            "the index at %s does not record how its chunks were sized (built before chunks were fitted to the "
            "model's window, so long chunks were embedded truncated); re-ingest into a fresh data dir to fix",
            where,
        )
        return
    raise LorechatError(
        ErrorCode.index_mismatch,
        f"The index at {where} holds chunks sized for {recorded!r}, but this process sizes them for "
        f"{wanted!r} (another model window or embed-text version). Re-ingest into a fresh data dir (or a "
        f"new index path / collection), or go back to the model that built the index.",
        extra={"index_chunking": str(recorded), "chunking": wanted},
    )


def mismatch_error(*, where: str, built_with: str, wanted: str) -> LorechatError:
    return LorechatError(
        ErrorCode.index_mismatch,
        f"The index at {where} was built with embedder {built_with!r}, but this process embeds with "
        f"{wanted!r}; their vectors are not comparable. Either set embedding.backend (and "
        f"embedding.model_path) back to what built the index, or re-ingest into a fresh data dir "
        f"(or a new index path / collection).",
        extra={"index_embedder": built_with, "embedder": wanted},
    )
