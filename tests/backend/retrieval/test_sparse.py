"""BM25 sparse vectors: stemmed, stopword-free terms; TF weights for documents, unit weights for queries."""

from __future__ import annotations

import qdrant_edge

from backend.retrieval.sparse import BM25_LANGUAGE, asked_terms, bm25_document, bm25_query, whole_terms
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


def test_a_dotted_number_is_a_term_and_its_prefixes_too() -> None:
    release = set(bm25_document("Version 8.1.0. Drop support for Python 3.6.").indices)
    other = set(bm25_document("Version 8.0.0. Drop support for Python 2 and 3.5.").indices)
    asked = set(bm25_query("Click 8.1").indices)
    # "8.1" is a term of its own that the 8.1.0 release notes hold and the 8.0.0 ones do not, though both hold the
    # digits "8" and "1".
    assert (asked & release) - other
    assert set(bm25_query("3.6").indices) & release - other
    assert set(bm25_query("v2.3").indices) - set(bm25_query("2 3").indices)
    # Text without a dotted number or a code name is indexed as before; a number's own parts stay terms as well.
    assert whole_terms("Python 3, then 2,5, e.g. a built-in one") == []
    assert whole_terms("127.0.0.1 or 1.5") == ["n127x0", "n127x0x0", "n127x0x0x1", "n1x5"]
    assert set(bm25_query("8 1").indices) <= release


def test_a_two_part_version_asked_is_its_release_too() -> None:
    # Every page of a documentation set titled with its series: "8.1" is in every chunk and tells none apart.
    series = "Changes — Click Documentation (8.1.x)"
    release = set(bm25_document(f"{series}\nVersion 8.1.0\nDrop support for Python 3.6.").indices)
    other = set(bm25_document(f"{series}\nVersion 8.0.0\nDrop support for Python 2 and 3.5.").indices)
    asked = set(bm25_query("Which Python version stopped being supported in Click 8.1?").indices)
    assert (asked & release) - other
    # A version with three parts asked is that release only; a dotted number in a document is not widened.
    assert asked_terms("8.1 or 3.6.1") == ["n8x1", "n3x6", "n3x6x1", "n8x1x0"]
    assert whole_terms("8.1") == ["n8x1"]


def test_a_code_name_is_a_term_as_well_as_its_words() -> None:
    function = set(bm25_document("generate_series(start, stop) returns a series of values.").indices)
    words = set(bm25_document("Generate a series of reports, then stop.").indices)
    asked = set(bm25_query("How do I call generate_series?").indices)
    assert (asked & function) - words
    # A dotted name is found by any run of two or more of its parts; an option by its whole name.
    joined = set(bm25_document("Use os.path.join() and set --force-with-lease.").indices)
    for name in ("os.path.join", "path.join", "os.path", "--force-with-lease"):
        assert set(bm25_query(name).indices) <= joined, name
    assert not set(bm25_query("path.split").indices) <= joined
    assert whole_terms("pg_hba.conf") == ["cpgxhbaxconf"]


def test_added_terms_leave_the_words_weights_as_they_were() -> None:
    # A chunk's length, as BM25 weighs its words, is its text's: the whole terms added for its names lengthen nothing,
    # so a question naming no code ranks the chunks as it would without them.
    text = "Call generate_series(1, 10) or os.path.join in 8.1.0; series generate values."
    model = qdrant_edge.Bm25(qdrant_edge.Bm25Config(language=BM25_LANGUAGE))
    words = model.embed_document(text)
    vector = bm25_document(text)
    weights = dict(zip(vector.indices, vector.values, strict=True))
    assert {index: weights[index] for index in words.indices} == dict(zip(words.indices, words.values, strict=True))
    assert len(vector.indices) == len(words.indices) + len(set(whole_terms(text)))
