"""BM25 sparse vectors, computed in-process by Qdrant Edge's tokenizer so both store adapters index the same terms.

Documents carry term-frequency weights (k=1.2, b=0.75); queries carry 1.0 per unique term. The IDF half of
BM25 is applied by the engine at query time (the sparse vector is declared with the IDF modifier), so the
vectors stay valid as the corpus grows.
"""

from __future__ import annotations

import re
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


# The tokenizer cuts at every dot, underscore and dash, so what a reader takes as one thing is several words that
# many texts hold. Such a thing is also indexed whole, as one more term. The terms are added, nothing else moves: a
# chunk's own words keep the weights its length gives them without the added terms, so a question naming no code ranks
# exactly as before, and an index built before has no such terms (its queries' extra terms match nothing there):
# - a dotted number ("8.1.0", "v9.6"): one term per prefix of two parts or more ("8.1.0" -> 8.1 and 8.1.0), so "Click
#   8.1" finds the 8.1.x release notes, not the 8.0.0 ones as well, and "3.6" is not just "3" and "6";
# - a name written as code: with underscores ("generate_series"), dots or "::" between its parts ("os.path.join",
#   "postgresql.conf": one term per run of two parts or more, so "path.join" finds it too), or an option's dashes
#   ("--force-with-lease"). Words joined by hyphens ("built-in") are not names: they stay words.
# A question's two-part version ("Click 8.1") is also asked as its release ("8.1.0"): a documentation set's every page
# may be titled with its series ("Click Documentation (8.1.x)"), so its "8.1" term is in every chunk and weighs
# nothing, while the release's own notes ("Version 8.1.0") are the only chunks holding "8.1.0".
_DOTTED = re.compile(r"(?:(?<=\bv)|(?<![\w.]))\d+(?:\.\d+)+(?!\w|\.\d)")
_CODE_NAME = re.compile(
    r"(?<![\w.:-])(?:--?[A-Za-z]\w*(?:-\w+)+|[A-Za-z_]\w*(?:(?:\.|::)[A-Za-z_]\w*)+|[A-Za-z]\w*_\w+)"
)
_PARTS = re.compile(r"\.|::")
_NOT_ALNUM = re.compile(r"[\W_]+")


def whole_terms(text: str) -> list[str]:
    """A term for each prefix of each dotted number in `text` and each run of parts of each code name in it."""
    terms = []
    for match in _DOTTED.finditer(text):
        parts = match[0].split(".")
        terms += ["n" + "x".join(parts[:end]) for end in range(2, len(parts) + 1)]
    for match in _CODE_NAME.finditer(text):
        parts = _PARTS.split(match[0].lower().lstrip("-"))
        if all(len(part) == 1 for part in parts):  # "e.g.", "i.e.": abbreviations
            continue
        runs = [parts[i:j] for i in range(len(parts)) for j in range(i + 2, len(parts) + 1)] or [parts]
        terms += ["c" + "x".join(_NOT_ALNUM.sub("x", part) for part in run) for run in runs]
    return terms


def asked_terms(text: str) -> list[str]:
    """`whole_terms` of a question, with each two-part version it asks also asked as its release ("8.1": 8.1.0)."""
    versions = [match[0].split(".") for match in _DOTTED.finditer(text)]
    return whole_terms(text) + [f"n{major}x{minor}x0" for major, minor in (v for v in versions if len(v) == 2)]


def names_code(text: str) -> bool:
    """Whether `text` names code (a name `whole_terms` indexes whole; dotted numbers are not names)."""
    return any(term.startswith("c") for term in whole_terms(text))


def bm25_document(text: str) -> SparseVector:
    words = _model().embed_document(text)
    whole = whole_terms(text)
    if not whole:
        return _convert(words)
    # The added terms' weights as the text with them gives them; the words' as the text alone does.
    own = set(words.indices)
    extended = _model().embed_document(f"{text}\n{' '.join(whole)}")
    added = [(index, value) for index, value in zip(extended.indices, extended.values, strict=True) if index not in own]
    return SparseVector(
        indices=(*words.indices, *(index for index, _ in added)),
        values=(*words.values, *(value for _, value in added)),
    )


def bm25_query(text: str) -> SparseVector:
    """Empty when the query holds only stopwords or punctuation; stores then return no bm25 hits."""
    whole = asked_terms(text)
    return _convert(_model().embed_query(f"{text}\n{' '.join(whole)}" if whole else text))
