"""The retriever: text in, creator-scoped hits out; and the one place chunks become vectors for ingestion.

Both directions go through this module so a query is always embedded, tokenized and filtered the way the
chunks were when they were ingested.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from functools import lru_cache

from backend import tracing
from backend.errors import ErrorCode, LorechatError
from backend.retrieval.embedder import Embedder
from backend.retrieval.late_interaction import rescore
from backend.retrieval.models import QueryVectors, SearchMode
from backend.retrieval.search_cache import SearchCache
from backend.retrieval.sparse import bm25_document, bm25_query, names_code
from backend.retrieval.stores.protocol import Fusion, Store, rank_key
from backend.settings import RetrievalSettings
from backend.stages import Chunk, EmbeddedChunk, Hit, SparseVector

_NO_TERMS = SparseVector(indices=(), values=())
_WHITESPACE = re.compile(r"\s+")


# Bump when what gets embedded for a chunk changes (the prefix rules below, or how chunks are fitted to the
# model's window): the index records it with the window, and a different record asks for a re-ingest.
EMBED_TEXT_VERSION = 2
# A title or heading trail longer than this is cut (with an ellipsis) in the prefix, so the prefix can
# never take most of the model's window away from the chunk's own text.
PREFIX_MAX_CHARS = 160


def embed_text(chunk: Chunk) -> str:
    """What gets embedded (dense and BM25) for a chunk: its title and heading trail, then its text."""
    return compose_embed_text(title=chunk.title, heading=chunk.heading, text=chunk.text)


def compose_embed_text(*, title: str, heading: str, text: str) -> str:
    """A chunk's title and heading trail as context lines, then its text (the chunker measures this too).

    A chunk like "Preheat to 220°C." means little alone; prefixed with "Sourdough basics / Baking" it
    matches questions about sourdough. Lines the chunk text already starts with are not repeated, so a
    heading block kept in the chunk does not count twice for BM25. The chunker sizes chunks so that this
    whole text, prefix included, fits the model's window (pipeline/chunk.py).
    """
    context = [line for line in (title, heading) if line and not text.startswith(line)]
    if len(context) == 2 and heading.startswith(title):
        context = [heading]
    return "\n".join([*(_short(line) for line in context), text])


def _short(line: str) -> str:
    return line if len(line) <= PREFIX_MAX_CHARS else line[: PREFIX_MAX_CHARS - 1].rstrip() + "…"


def chunking_id(max_tokens: int) -> str:
    """Recorded with the index: chunks were fitted, prefix included, to a window of this many model tokens."""
    return f"embed-text v{EMBED_TEXT_VERSION}, window {max_tokens}"


@lru_cache(maxsize=4096)
def snippet(text: str, max_chars: int) -> str:
    """Whitespace-collapsed text cut at a word boundary, with an ellipsis when something was dropped. Cached: the
    same chunks come back turn after turn (~37 µs a source, ~1 µs cached), and streams showing a chunk share one
    snippet."""
    # Only as much of the text as the snippet needs is collapsed (every source of every turn passes here, and
    # a chunk is ~5x a snippet): a collapsed prefix is a prefix of the collapsed whole.
    end = 2 * max_chars
    flat = _WHITESPACE.sub(" ", text[:end]).lstrip()
    while len(flat.rstrip()) <= max_chars and end < len(text):
        end *= 4
        flat = _WHITESPACE.sub(" ", text[:end]).lstrip()
    flat = flat.rstrip() if end >= len(text) else flat
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
    return sorted(hits, key=lambda hit: rank_key((hit.score, hit.chunk_id)))


class Retriever:
    """Embedder + Store + retrieval settings. Sync (milliseconds); async callers use a worker thread, after asking
    `recall` on the loop. With a `cache` (the service's), a search asked again is answered from it."""

    def __init__(
        self, *, embedder: Embedder, store: Store, settings: RetrievalSettings, cache: SearchCache | None = None
    ) -> None:
        self.embedder = embedder
        self.store = store
        self.settings = settings
        self._cache = cache
        # Refuses (index_mismatch) an index built by another embedder before any query can be mis-ranked.
        # The window is recorded too: chunks cut for another window would be read truncated (or needlessly small).
        store.ensure_collection(
            dense_size=embedder.dimension,
            embedder_id=embedder.embedder_id,
            chunking=chunking_id(embedder.max_tokens),
        )

    @property
    def fusion(self) -> Fusion:
        """How hybrid fuses a question naming no code."""
        return Fusion(
            method=self.settings.fusion,
            rrf_k=self.settings.rrf_k,
            dense_weight=self.settings.dense_weight,
            bm25_weight=self.settings.bm25_weight,
        )

    def fusion_for(self, query: str) -> Fusion:
        """How hybrid fuses this question: BM25 at `code_bm25_weight` when it names code (sparse.names_code)."""
        fusion = self.fusion
        if self.settings.code_bm25_weight != self.settings.bm25_weight and names_code(query):
            return dataclasses.replace(fusion, bm25_weight=self.settings.code_bm25_weight)
        return fusion

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
        fusion = self.fusion_for(query)
        if self._cache is None:
            return self._search(query, creator=creator, limit=limit, mode=chosen, fusion=fusion)
        key, revision = self._cache_key(query, creator, limit, chosen, fusion), self._cache.revision(self.store)
        hits = self._cache.get(key, revision)
        if hits is None:
            hits = self._search(query, creator=creator, limit=limit, mode=chosen, fusion=fusion)
            if self._cache.revision(self.store) == revision:  # else a write finished meanwhile: it may predate it
                self._cache.put(key, revision, hits)
        return hits

    def recall(self, query: str, *, creator: str | None = None, k: int | None = None) -> list[Hit] | None:
        """The default search's hits (or `k` of them) if the cache holds them (no model, no engine: fine on the event
        loop)."""
        if self._cache is None:
            return None
        limit, mode = k if k is not None else self.settings.k, self.settings.mode
        key = self._cache_key(query, creator, limit, mode, self.fusion_for(query))
        return self._cache.get(key, self._cache.revision(self.store))

    def search_documents(self, query: str, documents: Sequence[str], *, creator: str | None, k: int) -> list[Hit]:
        """The `k` chunks of these documents that best answer `query` (a curated answer's linked sources), in the
        default mode; uncached (asked only when a curated answer is served)."""
        if not documents or not query.strip():
            return []
        return self._search(
            query, creator=creator, limit=k, mode=self.settings.mode, fusion=self.fusion_for(query), documents=documents
        )

    def refine(self, vectors: QueryVectors, hits: Sequence[Hit], *, mode: SearchMode, fusion: Fusion) -> list[Hit]:
        """Hits as the engine returned them, in final rank order: in hybrid mode the top `sentence_candidates`
        re-scored by their best stored sentence (late_interaction.py), the rest after them as they were."""
        ranked = in_rank_order(hits)
        if not self._late_interaction(mode):
            return ranked
        head, tail = ranked[: self.settings.sentence_candidates], ranked[self.settings.sentence_candidates :]
        fused = rescore(
            head, vectors.dense, fusion=fusion, weight=self.settings.sentence_weight,
            has_terms=bool(vectors.sparse.indices),
        )  # fmt: skip
        # Every share is ≥ 0: a re-scored head still ranks above the tail.
        return [*in_rank_order(fused), *tail]

    def _late_interaction(self, mode: SearchMode) -> bool:
        return mode == "hybrid" and self.settings.sentence_weight > 0

    def _cache_key(
        self, query: str, creator: str | None, limit: int, mode: SearchMode, fusion: Fusion
    ) -> tuple[object, ...]:
        # Everything a search's result depends on; the settings too, which a caller may swap (evaluations do).
        return (
            query, creator, limit, mode, fusion, self.settings.prefetch_limit,
            self.settings.sentence_weight, self.settings.sentence_candidates,
        )  # fmt: skip

    def _search(
        self,
        query: str,
        *,
        creator: str | None,
        limit: int,
        mode: SearchMode,
        fusion: Fusion,
        documents: Sequence[str] | None = None,
    ) -> list[Hit]:
        """One search in `fusion` (the question's own, `fusion_for`: the caller has it for the cache key)."""
        with tracing.span("embed query", {"lorechat.search.mode": mode}):
            vectors = self.query_vectors(query, mode=mode)
        # RRF ties exactly and often (ranks 1+2 vs 2+1) and the engines order ties arbitrarily, even at the
        # k-th place. A few extra candidates, ordered by (score, id), make the same question always show the
        # same sources in the same order.
        # Hybrid asks for the candidates late interaction re-scores (refine), when those are more.
        fetch = max(limit, self.settings.sentence_candidates) if self._late_interaction(mode) else limit
        with tracing.span("index search", {"lorechat.search.k": limit}):
            hits = self.store.search(
                vectors,
                k=fetch,
                mode=mode,
                creator=creator,
                prefetch_limit=max(self.settings.prefetch_limit, fetch + TIE_MARGIN),
                fusion=fusion,
                tie_margin=TIE_MARGIN,
                documents=documents,
            )
        return self.refine(vectors, hits, mode=mode, fusion=fusion)[:limit]

    def embed_chunks(self, chunks: Sequence[Chunk], *, batch_size: int | None = None) -> list[EmbeddedChunk]:
        """Dense and BM25 vectors for each chunk, in order; the model runs in batches."""
        texts = [embed_text(chunk) for chunk in chunks]
        dense = self.embedder.embed_documents(texts, batch_size=batch_size)
        return [
            EmbeddedChunk(chunk=chunk, dense=tuple(vector.tolist()), sparse=bm25_document(text))
            for chunk, vector, text in zip(chunks, dense, texts, strict=True)
        ]
