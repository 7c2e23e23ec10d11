"""The retriever: text in, creator-scoped hits out; and the one place chunks become vectors for ingestion.

Both directions go through this module so a query is always embedded, tokenized and filtered the way the
chunks were when they were ingested.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from backend.errors import ErrorCode, LorechatError
from backend.retrieval.embedder import Embedder
from backend.retrieval.models import QueryVectors, SearchMode
from backend.retrieval.sparse import bm25_document, bm25_query
from backend.retrieval.stores.protocol import Store
from backend.settings import RetrievalSettings
from backend.stages import Chunk, EmbeddedChunk, Hit, SparseVector

_NO_TERMS = SparseVector(indices=(), values=())
_WHITESPACE = re.compile(r"\s+")


def embed_text(chunk: Chunk) -> str:
    """What gets embedded (dense and BM25) for a chunk: its title and heading trail, then its text.

    A chunk like "Preheat to 220°C." means little alone; prefixed with "Sourdough basics / Baking" it
    matches questions about sourdough. Lines the chunk text already starts with are not repeated, so a
    heading block kept in the chunk does not count twice for BM25. The model reads 256 word pieces at
    most, so the prefix is kept to two short lines.
    """
    context = [line for line in (chunk.title, chunk.heading) if line and not chunk.text.startswith(line)]
    if len(context) == 2 and chunk.heading.startswith(chunk.title):
        context = [chunk.heading]
    return "\n".join([*context, chunk.text])


def snippet(text: str, max_chars: int) -> str:
    """Whitespace-collapsed text cut at a word boundary, with an ellipsis when something was dropped."""
    flat = _WHITESPACE.sub(" ", text).strip()
    if len(flat) <= max_chars:
        return flat
    cut = flat[: max_chars - 1]
    space = cut.rfind(" ")
    if space >= max_chars // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


# Extra candidates fetched so ties at the k-th place are broken the same way every time.
TIE_MARGIN = 16


def in_rank_order(hits: Sequence[Hit]) -> list[Hit]:
    """Best first; equal scores by chunk id, so ties always fall the same way."""
    return sorted(hits, key=lambda hit: (-hit.score, hit.chunk_id))


class Retriever:
    """Embedder + Store + retrieval settings. Sync (milliseconds); async callers use a worker thread."""

    def __init__(self, *, embedder: Embedder, store: Store, settings: RetrievalSettings) -> None:
        self.embedder = embedder
        self.store = store
        self.settings = settings
        # Refuses (index_mismatch) an index built by another embedder before any query can be mis-ranked.
        store.ensure_collection(dense_size=embedder.dimension, embedder_id=embedder.embedder_id)

    def query_vectors(self, query: str, *, mode: SearchMode) -> QueryVectors:
        """Only what the mode uses is computed: a bm25 search never runs the model."""
        dense: tuple[float, ...] = ()
        if mode != "bm25":
            dense = tuple(self.embedder.embed_query(query).tolist())
        sparse = bm25_query(query) if mode != "dense" else _NO_TERMS
        return QueryVectors(dense=dense, sparse=sparse)

    def search(
        self,
        query: str,
        *,
        creator: str | None = None,
        k: int | None = None,
        mode: SearchMode | None = None,
    ) -> list[Hit]:
        if not query.strip():
            raise LorechatError(ErrorCode.invalid_input, "The query is empty.")
        limit = k if k is not None else self.settings.k
        if limit < 1:
            raise LorechatError(ErrorCode.invalid_input, f"k must be at least 1, got {limit}.")
        chosen: SearchMode = mode or self.settings.mode
        vectors = self.query_vectors(query, mode=chosen)
        # RRF ties exactly and often (ranks 1+2 vs 2+1) and the engines order ties arbitrarily, even at the
        # k-th place. A few extra candidates, ordered by (score, id), make the same question always show the
        # same sources in the same order.
        fetched = limit + TIE_MARGIN
        hits = self.store.search(
            vectors,
            k=fetched,
            mode=chosen,
            creator=creator,
            prefetch_limit=max(self.settings.prefetch_limit, fetched),
        )
        return in_rank_order(hits)[:limit]

    def embed_chunks(self, chunks: Sequence[Chunk], *, batch_size: int | None = None) -> list[EmbeddedChunk]:
        """Dense and BM25 vectors for each chunk, in order; the model runs in batches."""
        texts = [embed_text(chunk) for chunk in chunks]
        dense = self.embedder.embed_documents(texts, batch_size=batch_size)
        return [
            EmbeddedChunk(chunk=chunk, dense=tuple(vector.tolist()), sparse=bm25_document(text))
            for chunk, vector, text in zip(chunks, dense, texts, strict=True)
        ]
