"""The words of a text as the answerer compares them: folded (no case, no accents), lightly stemmed, without
stopwords; an identifier's words too ("lineNumber" is line and number), a short option ("-r", case kept), a dotted
number whole ("8.1.0": 8.1 and 8.1.0) and a capital letter standing alone ("class B"). Questions and source sentences
are read by the same rules here, so a word asked is a word found.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from backend.stages import Creator

_WORD = re.compile(r"[\w']+", re.UNICODE)
_STOPWORDS = frozenset(
    "a an and are as at be been but by can could did do does doing for from had has have how i if in into is it "
    "its it's me my of on or our so than that the their them then there these they this those to was we were what "
    "when where which who whom why will with would you your about should tell explain say says said think thinks "
    "thought write writes wrote mention mentions talk talks describe describes suggest suggests advise advises "
    "please know any some much many use uses using used get make way best she he her his him one also just there's "
    "what's does doesn't don't".split()
)


def fold(text: str) -> str:
    """Lowercase without accents, so "Inês" and "Ines" are one word."""
    if text.isascii():  # nothing to decompose or drop (ASCII is its own NFKD), at C speed instead of a char walk
        return text.lower()
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


# A stem never lands on a negation: "notes" would otherwise match every "not" (asked "where are notes stored").
_NEGATIONS = frozenset({"not", "nor"})


def stem(word: str) -> str:
    """A light suffix strip, so "waking" meets "wake" and "feeds" meets "fed"-free "feed"."""
    word = fold(word).removesuffix("'s").removesuffix("’s")
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    for suffix in ("ing", "ed", "es", "s", "e"):
        if len(word) - len(suffix) >= 3 and word.endswith(suffix) and not word.endswith("ss"):
            if word[: -len(suffix)] in _NEGATIONS:  # "notes" is no "not": a shorter strip, or the word
                continue
            return word[: -len(suffix)]
    return word


def content_terms(text: str, *, drop: frozenset[str] = frozenset()) -> set[str]:
    return set(text_terms(text) - drop) if drop else set(text_terms(text))


# The words inside an identifier: "lineNumber" is "line" and "number", "exist_ok" "exist" and "ok", "GIT_DIR" "git"
# and "dir".
_IDENTIFIER = re.compile(r"[A-Za-z0-9]_[A-Za-z0-9]|[a-z][A-Z]")
_IDENTIFIER_PARTS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


# A short option ("-r", "-P"): its letter alone is no word, yet it is what "dpkg -r or dpkg -P?" asks about. Case
# is kept: "-p" is not "-P".
_SHORT_OPTION = re.compile(r"(?<![\w-])-[A-Za-z](?![\w-])")
# A capital letter standing alone names a thing ("class B", "plan C", a table row keyed "B"): a term, case kept.
# Not "A" nor "I" (an article, a pronoun), not an initial ("B. Smith"), not part of a key chord ("Ctrl-C").
_LETTER = re.compile(r"(?<![\w.'’-])[B-HJ-Z](?![\w'’-])(?!\.\s?[A-Z])")


# A dotted number ("8.1.0", "3.6") is a term per prefix of two parts or more ("8.1", "8.1.0"), besides its digits:
# "Click 8.1" asks about what the 8.1.0 release notes say, not the 8.0.0 ones, though both hold an "8" (retrieval
# reads it so too: retrieval/sparse.py).
_DOTTED = re.compile(r"(?<![\w.])\d+(?:\.\d+)+(?!\w|\.\d)")


@lru_cache(maxsize=50_000)
def text_terms(text: str) -> frozenset[str]:
    # Cached: the same source sentences are read on every turn that retrieves them (the hot loop of rank()).
    words = _WORD.findall(text)
    found = [*words, *(part for word in words if _IDENTIFIER.search(word) for part in _IDENTIFIER_PARTS.findall(word))]
    terms = {term for term in map(_word_term, found) if term is not None}  # an identifier's words ("line numbers")
    terms.update(_SHORT_OPTION.findall(text))
    terms.update(_LETTER.findall(text))
    for match in _DOTTED.finditer(text):
        parts = match[0].split(".")
        terms.update(".".join(parts[:end]) for end in range(2, len(parts) + 1))
    return frozenset(terms)


@lru_cache(maxsize=50_000)
def _word_term(word: str) -> str | None:
    word = word.strip("'")  # quotes around a word ("'idle in transaction'"), not an apostrophe in it ("don't")
    if fold(word) in _STOPWORDS:
        return None
    term = stem(word)
    return term if term not in _STOPWORDS and (len(term) > 1 or term.isdigit()) else None


def name_words(creator: Creator | None) -> frozenset[str]:
    if creator is None:
        return frozenset()
    words = {stem(w) for w in _WORD.findall(f"{creator.name} {creator.slug.replace('-', ' ')}")}
    return frozenset(words | {"dr", "chef"})
