"""BM25 sparse vectors: stemmed, stopword-free terms; TF weights for documents, unit weights for queries."""

from __future__ import annotations

from backend.retrieval.sparse import bm25_document, bm25_query
from backend.stages import SparseVector


def test_document_and_query_share_stemmed_terms() -> None:
    document = bm25_document("Foxes jumped over the lazy dogs; the fox jumps again.")
    query = bm25_query("fox jumping")
    assert isinstance(document, SparseVector)
    assert len(document.indices) == len(document.values) > 0
    assert set(query.indices) <= set(document.indices)
    assert query.values == (1.0,) * len(query.indices)
    weights = dict(zip(document.indices, document.values, strict=True))
    fox = bm25_query("fox").indices[0]
    lazy = bm25_query("lazy").indices[0]
    # "fox" occurs twice, "lazy" once: term frequency shows in the document weights.
    assert weights[fox] > weights[lazy]


def test_stopwords_only_query_is_empty() -> None:
    assert bm25_query("the of and a") == SparseVector(indices=(), values=())
