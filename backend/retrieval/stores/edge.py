"""The embedded Store: one Qdrant Edge shard in this process (one process per shard, enforced by its WAL lock)."""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from backend.errors import ErrorCode, LorechatError
from backend.retrieval.models import CreatorCounts, DocumentState, QueryVectors, SearchMode
from backend.retrieval.stores.protocol import (
    DEFAULT_FUSION,
    DENSE_VECTOR,
    DOCUMENT_FIELDS,
    INDEX_SCHEMA_VERSION,
    SPARSE_VECTOR,
    TENANT_FIELD,
    Fusion,
    aggregate_documents,
    check_chunking,
    chunk_payload,
    count_by_creator,
    hit_from_payload,
    mismatch_error,
    rank_key,
    same_vectors,
    zscore_fuse,
)
from backend.stages import EmbeddedChunk, Hit

# Layout under the index path: the shard in its own folder, what built it in a JSON file beside it, and the lock
# file that the process holding the shard keeps locked.
SHARD_DIR = "shard"
SIDECAR = "lorechat-index.json"
LOCK_FILE = "lorechat.lock"
_UPSERT_BATCH = 256
_SCROLL_PAGE = 1024


class EdgeStore:
    """Store on a Qdrant Edge shard at `path`. Opens an existing shard at once, so a lock clash shows early."""

    def __init__(self, path: Path, *, hnsw_ef: int) -> None:
        self.path = Path(path)
        self._shard_path = self.path / SHARD_DIR
        self._sidecar = self.path / SIDECAR
        self._params = qe.SearchParams(hnsw_ef=hnsw_ef)
        # Writers (ingest) and the close() in shutdown must not interleave; reads go straight through.
        self._write_lock = threading.Lock()
        self._lock_fd: int | None = None  # the index's lock file, held while the shard is open (_hold_lock)
        self._shard: qe.EdgeShard | None = None
        self.revision = 0
        self.sees_every_write = True  # a shard is opened by one process at a time (LOCK_FILE)
        if self._shard_path.exists():
            self._shard = self._open(qe.EdgeShard.load, str(self._shard_path))

    # --- lifecycle ---------------------------------------------------------------------------------

    def _open(self, opener: Any, *args: Any) -> qe.EdgeShard:
        self._hold_lock()
        try:
            return opener(*args)
        except Exception as exc:  # the binding raises a bare Exception carrying the engine's message
            self._release_lock()
            if "WouldBlock" in str(exc):
                raise self._locked() from exc
            raise LorechatError(ErrorCode.index_unavailable, f"Cannot open the index at {self.path}: {exc}") from exc

    def _hold_lock(self) -> None:
        """Lock the index for this store before the engine touches the shard. The engine's own lock (its WAL's)
        is taken only after it has opened the segments, and a process that got that far and was refused had
        already removed the holder's tracker journals: its every later write failed ("Tracker journal ... is
        shorter than expected"). Released by close(), or by the kernel when the process dies."""
        if self._lock_fd is not None:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a read-only or foreign folder: the engine could not write its WAL there either
            raise LorechatError(ErrorCode.index_unavailable, f"Cannot open the index at {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise self._locked() from exc
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases its lock
            self._lock_fd = None

    def _locked(self) -> LorechatError:
        return LorechatError(
            ErrorCode.index_locked,
            f"The index at {self.path} is in use by another lorechat process (is `lorechat serve` "
            f"running?). The embedded index allows one process at a time: stop the server and retry, "
            f"or give this command the server's LORECHAT_AUTH__ADMIN_TOKEN so `ingest` goes through it.",
        )

    def ensure_collection(self, *, dense_size: int, embedder_id: str, chunking: str = "") -> None:
        if self._shard is not None or self._shard_path.exists():
            record = self._read_sidecar()
            built_with = f"{record.get('embedder_id')} ({record.get('dense_size')} dims)"
            wanted = f"{embedder_id} ({dense_size} dims)"
            if not same_vectors(record.get("embedder_id"), embedder_id) or record.get("dense_size") != dense_size:
                raise mismatch_error(where=str(self.path), built_with=built_with, wanted=wanted)
            check_chunking(where=str(self.path), recorded=record.get("chunking"), wanted=chunking)
            if self._shard is None:
                self._shard = self._open(qe.EdgeShard.load, str(self._shard_path))
            return
        config = qe.EdgeConfig(
            vectors={DENSE_VECTOR: qe.EdgeVectorParams(size=dense_size, distance=qe.Distance.Cosine)},
            # IDF is applied by the engine at query time, over whatever is indexed now.
            sparse_vectors={SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )
        shard = self._open(qe.EdgeShard.create, str(self._shard_path), config)  # makes the folder
        # is_tenant co-locates each creator's points, so the creator filter stays cheap at any size.
        shard.update(qe.UpdateOperation.create_field_index(TENANT_FIELD, qe.KeywordIndexParams(is_tenant=True)))
        shard.update(qe.UpdateOperation.create_field_index("document_id", qe.PayloadSchemaType.Keyword))
        shard.flush()
        self._shard = shard
        # Written after the shard exists: a crash in between leaves a shard without a record, which the
        # next open refuses rather than guessing what built it.
        record = {
            "embedder_id": embedder_id,
            "dense_size": dense_size,
            "chunking": chunking,
            "schema": INDEX_SCHEMA_VERSION,
        }
        tmp = self._sidecar.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, self._sidecar)

    def _read_sidecar(self) -> dict[str, Any]:
        try:
            record = json.loads(self._sidecar.read_text())
        except (OSError, ValueError):
            record = None
        if not isinstance(record, dict):
            raise LorechatError(
                ErrorCode.index_mismatch,
                f"The index at {self.path} has no readable {SIDECAR}, so its embedder is unknown. "
                f"Re-ingest into a fresh data dir (or delete {self.path}).",
            )
        return record

    def close(self) -> None:
        with self._write_lock:
            if self._shard is not None:
                self._shard.close()
                self._shard = None
                self.revision += 1
            self._release_lock()

    def optimize(self) -> None:
        """Build HNSW and merge segments (blocking; worth it after large ingests). Not in the Store protocol."""
        with self._write_lock:
            if self._shard is not None:
                self._shard.optimize()

    # --- writes ------------------------------------------------------------------------------------

    def _require(self) -> qe.EdgeShard:
        if self._shard is None:
            raise LorechatError(
                ErrorCode.index_unavailable, f"The index at {self.path} is not open (call ensure_collection)."
            )
        return self._shard

    def upsert(self, chunks: Sequence[EmbeddedChunk]) -> None:
        with self._write_lock:
            shard = self._require()
            try:
                for start in range(0, len(chunks), _UPSERT_BATCH):
                    points = [_point(item) for item in chunks[start : start + _UPSERT_BATCH]]
                    shard.update(qe.UpdateOperation.upsert_points(points))
                shard.flush()
            finally:  # a failed batch may have written the ones before it
                self.revision += 1

    def delete_documents(self, document_ids: Sequence[str]) -> int:
        if not document_ids:
            return 0
        return self._delete(_match("document_id", list(document_ids)))

    def delete_creator(self, creator: str) -> int:
        return self._delete(_match(TENANT_FIELD, creator))

    def _delete(self, condition: qe.FieldCondition) -> int:
        with self._write_lock:
            if self._shard is None:
                return 0
            where = qe.Filter(must=[condition])
            count = self._shard.count(qe.CountRequest(exact=True, filter=where))
            if count:
                try:
                    self._shard.update(qe.UpdateOperation.delete_points_by_filter(where))
                    self._shard.flush()
                finally:
                    self.revision += 1
            return count

    # --- reads -------------------------------------------------------------------------------------

    def documents(self, creator: str | None = None) -> dict[str, DocumentState]:
        if self._shard is None:
            return {}
        return aggregate_documents(self._scroll(creator))

    def _scroll(self, creator: str | None) -> Iterator[dict[str, Any]]:
        shard = self._require()
        where = qe.Filter(must=[_match(TENANT_FIELD, creator)]) if creator else None
        offset = None
        while True:
            records, offset = shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=_SCROLL_PAGE,
                    filter=where,
                    with_payload=qe.PayloadSelector.Include(list(DOCUMENT_FIELDS)),
                    with_vector=False,
                )
            )
            for record in records:
                yield record.payload or {}
            if offset is None:
                return

    def counts(self) -> list[CreatorCounts]:
        return count_by_creator(self.documents())

    def points(self) -> int:
        return self._shard.info().points_count if self._shard is not None else 0

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
        if self._shard is None:
            return []
        # The tenant filter sits on the request itself: the engine applies it inside every prefetch,
        # so another creator's chunk can never take a slot, not even before fusion.
        must: list[Any] = [_match(TENANT_FIELD, creator)] if creator else []
        if documents is not None:
            must.append(_match("document_id", list(documents)))
        where = qe.Filter(must=must) if must else None
        dense = qe.Query.Nearest(list(query.dense), using=DENSE_VECTOR)
        has_terms = bool(query.sparse.indices)
        sparse = qe.Query.Nearest(
            qe.SparseVector(list(query.sparse.indices), list(query.sparse.values)), using=SPARSE_VECTOR
        )
        # Candidates first, without payloads; then the payloads of the k kept. Reading a point's payload is most
        # of a query's cost (~30 µs a point, sentence vectors excluded or not): the tie margin's candidates only
        # need their ids and scores.
        limit = k + tie_margin
        request: Any = None  # zscore: two plain searches, fused here (protocol.zscore_fuse)
        if mode == "dense":
            request = qe.QueryRequest(limit=limit, query=dense, filter=where, params=self._params, with_payload=False)
        elif mode == "bm25":
            if not has_terms:
                return []
            request = qe.QueryRequest(limit=limit, query=sparse, filter=where, with_payload=False)
        elif fusion.method != "zscore":
            dense_times, bm25_times = fusion.prefetch_repeats(has_terms=has_terms)
            prefetches = [qe.Prefetch(limit=prefetch_limit, query=dense, params=self._params)] * dense_times
            prefetches += [qe.Prefetch(limit=prefetch_limit, query=sparse)] * bm25_times
            request = qe.QueryRequest(
                limit=limit,
                prefetches=prefetches,
                query=_fusion(fusion, has_terms=has_terms),
                filter=where,
                with_payload=False,
            )
        try:
            if request is None:
                dense_request = qe.QueryRequest(
                    limit=prefetch_limit, query=dense, filter=where, params=self._params, with_payload=False
                )
                bm25_request = qe.QueryRequest(limit=prefetch_limit, query=sparse, filter=where, with_payload=False)
                ranked = zscore_fuse(
                    self._scored(dense_request), self._scored(bm25_request) if has_terms else [], fusion
                )[:k]
            else:
                ranked = sorted(self._scored(request), key=rank_key)[:k]
            records = self._shard.retrieve([point_id for _, point_id in ranked], True, False)
        except Exception as exc:  # engine errors arrive as bare Exceptions; keep internals out of replies
            raise LorechatError(ErrorCode.index_unavailable, "The vector index failed to answer.") from exc
        payloads = {str(record.id): record.payload or {} for record in records}
        # A point deleted between the two calls (an ingest replacing it) is left out, not shown without its text.
        return [
            hit_from_payload(point_id, score, payloads[point_id]) for score, point_id in ranked if point_id in payloads
        ]

    def _scored(self, request: Any) -> list[tuple[float, str]]:
        """A plain search's (score, point id) pairs."""
        assert self._shard is not None
        return [(point.score, str(point.id)) for point in self._shard.query(request)]


def _fusion(fusion: Fusion, *, has_terms: bool) -> Any:
    # Returned as Any: the stubs type QueryRequest.query narrowly.
    if fusion.method == "dbsf":
        return qe.Fusion.Dbsf()
    return qe.Fusion.Rrf(k=fusion.rrf_k, weights=fusion.weights(has_terms=has_terms))


def _match(key: str, value: str | list[str]) -> qe.FieldCondition:
    match = qe.MatchAny(value) if isinstance(value, list) else qe.MatchValue(value)
    return qe.FieldCondition(key, match=match)


def _point(item: EmbeddedChunk) -> qe.Point:
    vectors: dict[str, Any] = {
        DENSE_VECTOR: list(item.dense),
        SPARSE_VECTOR: qe.SparseVector(list(item.sparse.indices), list(item.sparse.values)),
    }
    return qe.Point(item.chunk.chunk_id, vectors, chunk_payload(item))
