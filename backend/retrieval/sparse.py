"""BM25 sparse vectors, computed in-process by Qdrant Edge's tokenizer so both store adapters index the same terms.

Documents carry term-frequency weights (k=1.2, b=0.75); queries carry 1.0 per unique term. The IDF half of
BM25 is applied by the engine at query time (the sparse vector is declared with the IDF modifier), so the
vectors stay valid as the corpus grows.
"""

from __future__ import annotations

from functools import lru_cache

import qdrant_edge

from backend.stages import SparseVector

# Changing the language (stemmer, stopwords) changes every term id: that means re-ingesting.
BM25_LANGUAGE = "english"


@lru_cache(maxsize=1)
def _model() -> qdrant_edge.Bm25:
    return qdrant_edge.Bm25(qdrant_edge.Bm25Config(language=BM25_LANGUAGE))


def _convert(vector: qdrant_edge.SparseVector) -> SparseVector:
    return SparseVector(indices=tuple(vector.indices), values=tuple(vector.values))


def bm25_document(text: str) -> SparseVector:
    return _convert(_model().embed_document(text))


def bm25_query(text: str) -> SparseVector:
    """Empty when the query holds only stopwords or punctuation; stores then return no bm25 hits."""
    return _convert(_model().embed_query(text))
