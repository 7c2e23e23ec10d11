"""The server Store: a Qdrant collection through qdrant-client (a server URL, or local mode for tests)."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ApiException, UnexpectedResponse

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
    same_vectors,
    zscore_fuse,
)
from backend.stages import EmbeddedChunk, Hit

log = logging.getLogger(__name__)
_UPSERT_BATCH = 256
_SCROLL_PAGE = 1024


def is_local_location(url: str) -> bool:
    """A filesystem path or ":memory:" selects qdrant-client's in-process local mode."""
    return url == ":memory:" or "://" not in url


class ServerStore:
    """Store on one Qdrant collection. Local mode scans in numpy: fine for tests, not for production sizes."""

    def __init__(self, url: str, api_key: str | None, collection: str, *, hnsw_ef: int, timeout: float) -> None:
        if not url:
            raise LorechatError(ErrorCode.invalid_input, "index.url must be set when index.kind is 'server'")
        self.collection = collection
        self.local = is_local_location(url)
        # Local mode ignores payload indexes and search params, and warns about each; skip them there.
        self._params = None if self.local else qm.SearchParams(hnsw_ef=hnsw_ef)
        try:
            if url == ":memory:":
                self._client = QdrantClient(location=":memory:")
            elif self.local:
                Path(url).mkdir(parents=True, exist_ok=True)
                self._client = QdrantClient(path=url)
            else:
                if api_key and url.startswith("http://"):
                    log.warning("index.api_key is sent over plain http; use https outside a private network")
                with warnings.catch_warnings():
                    # The client repeats the warning above as a UserWarning on every construction.
                    warnings.filterwarnings("ignore", message="Api key is used with an insecure connection")
                    # No version probe at construction: it would block start-up on a down server, and warn.
                    self._client = QdrantClient(
                        url=url, api_key=api_key, timeout=max(1, math.ceil(timeout)), check_compatibility=False
                    )
        except RuntimeError as exc:  # local mode's folder lock
            if "already accessed" in str(exc):
                raise LorechatError(
                    ErrorCode.index_locked,
                    f"The local Qdrant folder {url} is in use by another lorechat process. Stop it and retry.",
                ) from exc
            raise
        self._where = url if self.local else "the configured Qdrant server"
        self.revision = 0
        # Local mode's folder (or memory) is this process's alone; a server is written by every replica and CLI.
        self.sees_every_write = self.local

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Connection trouble becomes index_unavailable; the message names no host (it may reach users)."""
        try:
            yield
        except UnexpectedResponse as exc:
            log.warning("qdrant answered %s: %s", exc.status_code, exc.content[:500])
            hint = " (check LORECHAT_INDEX__API_KEY)" if exc.status_code in (401, 403) else ""
            raise LorechatError(ErrorCode.index_unavailable, f"The vector index refused the request{hint}.") from exc
        except (ApiException, httpx.HTTPError, OSError) as exc:
            log.warning("qdrant unreachable: %r", exc)
            raise LorechatError(ErrorCode.index_unavailable, "The vector index is unreachable.") from exc

    # --- lifecycle ---------------------------------------------------------------------------------

    def ensure_collection(self, *, dense_size: int, embedder_id: str, chunking: str = "") -> None:
        with self._guard():
            if not self._client.collection_exists(self.collection):
                if self._create(dense_size=dense_size, embedder_id=embedder_id, chunking=chunking):
                    return
                # Another process (a replica, a worker, a CLI ingest) created it between the check and the create:
                # a server answers 409. Check what it was built with, as if it had been there all along.
            metadata = self._client.get_collection(self.collection).config.metadata or {}
            if not same_vectors(metadata.get("embedder_id"), embedder_id) or metadata.get("dense_size") != dense_size:
                raise mismatch_error(
                    where=f"{self._where}, collection {self.collection!r}",
                    built_with=f"{metadata.get('embedder_id')} ({metadata.get('dense_size')} dims)",
                    wanted=f"{embedder_id} ({dense_size} dims)",
                )
            check_chunking(
                where=f"{self._where}, collection {self.collection!r}",
                recorded=metadata.get("chunking"),
                wanted=chunking,
            )

    def _create(self, *, dense_size: int, embedder_id: str, chunking: str) -> bool:
        """Create the collection and its payload indexes; False when it already exists (a server's 409)."""
        try:
            self._client.create_collection(
                self.collection,
                vectors_config={DENSE_VECTOR: qm.VectorParams(size=dense_size, distance=qm.Distance.COSINE)},
                sparse_vectors_config={SPARSE_VECTOR: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
                metadata={
                    "embedder_id": embedder_id,
                    "dense_size": dense_size,
                    "chunking": chunking,
                    "schema": INDEX_SCHEMA_VERSION,
                },
            )
        except UnexpectedResponse as exc:
            if exc.status_code == 409:
                return False
            raise
        if not self.local:
            # Only the process whose create succeeded makes the indexes; one that got the 409 leaves them to it.
            self._client.create_payload_index(
                self.collection,
                TENANT_FIELD,
                field_schema=qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, is_tenant=True),
            )
            self._client.create_payload_index(self.collection, "document_id", field_schema=qm.PayloadSchemaType.KEYWORD)
        return True

    def close(self) -> None:
        self._client.close()

    def optimize(self) -> None:
        """A server optimizes on its own (Store.optimize is a no-op here)."""

    # --- writes ------------------------------------------------------------------------------------

    def upsert(self, chunks: Sequence[EmbeddedChunk]) -> None:
        with self._guard():
            try:
                for start in range(0, len(chunks), _UPSERT_BATCH):
                    points = [_point(item) for item in chunks[start : start + _UPSERT_BATCH]]
                    self._client.upsert(self.collection, points=points, wait=True)
            finally:  # a failed batch may have written the ones before it
                self.revision += 1

    def delete_documents(self, document_ids: Sequence[str]) -> int:
        if not document_ids:
            return 0
        return self._delete(_match("document_id", list(document_ids)))

    def delete_creator(self, creator: str) -> int:
        return self._delete(_match(TENANT_FIELD, creator))

    def _delete(self, condition: qm.FieldCondition) -> int:
        where = qm.Filter(must=[condition])
        with self._guard():
            if not self._client.collection_exists(self.collection):
                return 0
            count = self._client.count(self.collection, count_filter=where, exact=True).count
            if count:
                try:
                    self._client.delete(self.collection, points_selector=qm.FilterSelector(filter=where), wait=True)
                finally:
                    self.revision += 1
            return count

    # --- reads -------------------------------------------------------------------------------------

    def documents(self, creator: str | None = None) -> dict[str, DocumentState]:
        with self._guard():
            if not self._client.collection_exists(self.collection):
                return {}
            return aggregate_documents(self._scroll(creator))

    def _scroll(self, creator: str | None) -> Iterator[dict[str, Any]]:
        where = qm.Filter(must=[_match(TENANT_FIELD, creator)]) if creator else None
        offset: Any = None
        while True:
            records, offset = self._client.scroll(
                self.collection,
                scroll_filter=where,
                limit=_SCROLL_PAGE,
                offset=offset,
                with_payload=list(DOCUMENT_FIELDS),
                with_vectors=False,
            )
            for record in records:
                yield record.payload or {}
            if offset is None:
                return

    def counts(self) -> list[CreatorCounts]:
        return count_by_creator(self.documents())

    def points(self) -> int:
        with self._guard():
            if not self._client.collection_exists(self.collection):
                return 0
            return int(self._client.count(self.collection, exact=False).count)

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
        # Same placement as EdgeStore: the tenant filter on the request scopes every prefetch server-side.
        must: list[Any] = [_match(TENANT_FIELD, creator)] if creator else []
        if documents is not None:
            must.append(_match("document_id", list(documents)))
        where = qm.Filter(must=must) if must else None
        dense = list(query.dense)
        sparse = qm.SparseVector(indices=list(query.sparse.indices), values=list(query.sparse.values))
        has_terms = bool(query.sparse.indices)
        # One round trip with every candidate's payload: on a server a second call for the k kept (as EdgeStore
        # reads them) would cost more than the margin's payloads. The caller orders and cuts.
        arguments: dict[str, Any] = {"query_filter": where, "limit": k + tie_margin, "with_payload": True}
        if mode == "dense":
            arguments.update(query=dense, using=DENSE_VECTOR, search_params=self._params)
        elif mode == "bm25":
            if not has_terms:
                return []
            arguments.update(query=sparse, using=SPARSE_VECTOR)
        elif fusion.method == "zscore":
            return self._zscore_search(query, where=where, k=k, prefetch_limit=prefetch_limit, fusion=fusion)
        else:
            dense_times, bm25_times = fusion.prefetch_repeats(has_terms=has_terms)
            dense_prefetch = qm.Prefetch(query=dense, using=DENSE_VECTOR, limit=prefetch_limit, params=self._params)
            bm25_prefetch = qm.Prefetch(query=sparse, using=SPARSE_VECTOR, limit=prefetch_limit)
            prefetch = [dense_prefetch] * dense_times + [bm25_prefetch] * bm25_times
            arguments.update(prefetch=prefetch, query=_fusion(fusion, has_terms=has_terms))
        with self._guard():
            # One round trip per query on a server (a missing collection answers 404 → unavailable);
            # local mode raises a bare ValueError instead, so check there.
            if self.local and not self._client.collection_exists(self.collection):
                return []
            response = self._client.query_points(self.collection, **arguments)
        return [hit_from_payload(point.id, point.score, point.payload or {}) for point in response.points]

    def _zscore_search(
        self, query: QueryVectors, *, where: qm.Filter | None, k: int, prefetch_limit: int, fusion: Fusion
    ) -> list[Hit]:
        """Hybrid fused here (protocol.zscore_fuse): the two plain searches without payloads, then the payloads of
        the k kept in a third call (their ids as its filter), as EdgeStore reads only the kept ones."""
        searches: list[dict[str, Any]] = [
            {"query": list(query.dense), "using": DENSE_VECTOR, "search_params": self._params}
        ]
        if query.sparse.indices:
            sparse = qm.SparseVector(indices=list(query.sparse.indices), values=list(query.sparse.values))
            searches.append({"query": sparse, "using": SPARSE_VECTOR})
        with self._guard():
            if self.local and not self._client.collection_exists(self.collection):
                return []
            lists = [
                [
                    (point.score, str(point.id))
                    for point in self._client.query_points(
                        self.collection, query_filter=where, limit=prefetch_limit, with_payload=False, **search
                    ).points
                ]
                for search in searches
            ]
            ranked = zscore_fuse(lists[0], lists[1] if len(lists) > 1 else [], fusion)[:k]
            if not ranked:
                return []
            # The scope again (tenant, documents) beside the ids: the payloads read are the searches' own.
            ids = qm.HasIdCondition(has_id=[point_id for _, point_id in ranked])
            kept = qm.Filter(must=[ids, *(where.must if where is not None and isinstance(where.must, list) else [])])
            records, _ = self._client.scroll(
                self.collection, scroll_filter=kept, limit=len(ranked), with_payload=True, with_vectors=False
            )
        payloads = {str(record.id): record.payload or {} for record in records}
        # A point deleted between the calls (an ingest replacing it) is left out, not shown without its text.
        return [
            hit_from_payload(point_id, score, payloads[point_id]) for score, point_id in ranked if point_id in payloads
        ]


def _fusion(fusion: Fusion, *, has_terms: bool) -> qm.FusionQuery | qm.RrfQuery:
    if fusion.method == "dbsf":
        return qm.FusionQuery(fusion=qm.Fusion.DBSF)
    return qm.RrfQuery(rrf=qm.Rrf(k=fusion.rrf_k, weights=fusion.weights(has_terms=has_terms)))


def _match(key: str, value: str | list[str]) -> qm.FieldCondition:
    match = qm.MatchAny(any=value) if isinstance(value, list) else qm.MatchValue(value=value)
    return qm.FieldCondition(key=key, match=match)


def _point(item: EmbeddedChunk) -> qm.PointStruct:
    vectors: dict[str, Any] = {
        DENSE_VECTOR: list(item.dense),
        SPARSE_VECTOR: qm.SparseVector(indices=list(item.sparse.indices), values=list(item.sparse.values)),
    }
    return qm.PointStruct(id=item.chunk.chunk_id, vector=vectors, payload=chunk_payload(item))
