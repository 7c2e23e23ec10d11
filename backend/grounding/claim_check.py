"""The claim check: each sentence of a finished answer against the sources it cites (all of them when it cites
none), for every tier.

Per sentence: the best supporting span (source number + character offsets into that source's text, which the
`sources` event carries whole), a support score (meaning similarity with that span plus the share of the
sentence's words found in the cited text) and an exact check of facts: every number (with its unit) and name
in the sentence must be stated by a cited source. A number no cited source states is never supported. Framing
("Here is what Hazel's content says:", a refusal) is not a claim and needs no support.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from backend.grounding.facts import (
    INLINE_CODE,
    Quantity,
    clean_claim_text,
    is_number_word,
    names,
    quantities,
    quantity_stated,
)
from backend.grounding.sentences import SentenceVectors, Span, split_sentences
from backend.grounding.terms import content_terms, fold, name_words, stem
from backend.stages import Creator, Hit

# Sentence ends in an answer: . ! ? (then any [n] markers), a colon cited like one (a quoted sentence introducing
# what did not come along), a lead-in colon before a capital or after the framing ("Here is what the sources say:",
# whatever follows it), or a line break.
_END = re.compile(
    r"[.!?…][\"'”’)]*(?:\s*\[\d+(?:\s*[,;]\s*\d+)*\])*(?=\s|$)|:(?:\s*\[\d+(?:\s*[,;]\s*\d+)*\])+(?=\s|$)"
    r"|:(?=\s+[A-Z])|(?<=\bsay):(?=\s)|(?<=\bsays):(?=\s)|(?<=\babout it):(?=\s)|\n+",
)
_MARKER = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_LETTER = re.compile(r"[^\W\d_]")
# A claim whose words run, in order, through one cited source (a quote, its code's lines joined): supported as it
# stands, however many of the source's sentences and code lines it spans. Shorter runs ("It is 5.") occur by chance.
_VERBATIM_WORDS = 4
_WORD = re.compile(r"\w+")
_FRAMING = re.compile(
    r"^(?:here is|here's) what\b|\b(?:content|sources?) (?:says?|said)\b|doesn't cover|does not cover"
    r"|^i haven't covered|^the closest topics|^(?:sorry|i hope|let me know|i couldn't|i could not|i don't have)",
    re.IGNORECASE,
)
# The reply when the content does not cover a question (chat/prompt.py's refusal_text), the closest topics' titles
# included: a title may hold ". " or ": " and read as sentences of its own, but a refusal claims nothing.
# Found by their fixed phrases, then widened to the sentence's start by one look back: a pattern that scanned for
# the sentence's start itself would be quadratic in an answer with no sentence ends (a runaway upstream's).
_REFUSAL = re.compile(r"\bI haven't covered that in my content\.|\bcontent doesn't cover this\.")
_CLOSEST_TOPICS = re.compile(r"\s+The closest topics (?:it does|I do) cover: (?:“[^”]*”(?:, | and )?)+\.")


def refusal_spans(text: str) -> list[tuple[int, int]]:
    """Where `text` holds the refusal (its closest topics included), as (start, end) spans."""
    spans = []
    for match in _REFUSAL.finditer(text):
        start = match.start()
        if not match.group().startswith("I "):  # "<creator>'s content doesn't cover this.": from the sentence's start
            start = max(text.rfind(end, 0, start) for end in ".!?\n") + 1
        topics = _CLOSEST_TOPICS.match(text, match.end())
        spans.append((start, topics.end() if topics else match.end()))
    return spans


# Supported when the score reaches this and every fact is stated (calibrated in tests/backend/grounding/
# test_claim_check.py on quoted, paraphrased and invented sentences; BENCHMARKS.md "Answer checks").
SUPPORT_THRESHOLD = 0.6
_W_DENSE = 0.6
_W_WORDS = 0.4
# Every word of a sentence (facts stated) in one span and its neighbours: supported without embedding it.
_WORDS_DECIDE = 0.9


@dataclass(frozen=True, slots=True)
class Quote:
    source: int  # 1-based, as cited
    start: int  # offsets into that source's text
    end: int


@dataclass(frozen=True, slots=True)
class CheckedSentence:
    start: int  # offsets into the answer text
    end: int
    sources: list[int]  # the [n] it cites
    quote: Quote | None  # the best supporting span among the sources checked
    supported: bool
    score: float
    claim: bool  # False for framing, which needs no support


@dataclass(frozen=True, slots=True)
class AnswerCheck:
    sentences: list[CheckedSentence]

    @property
    def unsupported_claims(self) -> int:
        return sum(1 for s in self.sentences if s.claim and not s.supported)

    def as_json(self) -> list[dict[str, object]]:
        return [
            {
                "start": s.start,
                "end": s.end,
                "sources": s.sources,
                "quote": None
                if s.quote is None
                else {"source": s.quote.source, "start": s.quote.start, "end": s.quote.end},
                "supported": s.supported,
                "score": s.score,
                "claim": s.claim,
            }
            for s in self.sentences
        ]


def answer_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of an answer, its trailing [n] markers included."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in [*_END.finditer(text), None]:
        end = match.end() if match else len(text)
        if match is not None and (match.group() == ":" or match.group().startswith("\n")):
            end = match.start() + (1 if match.group() == ":" else 0)
        piece = text[start:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            if spans and not _LETTER.search(_MARKER.sub("", piece)):
                # No word in it ("#1469" after a changelog entry's full stop): the end of the sentence before.
                spans[-1] = (spans[-1][0], start + lead + len(piece.strip()))
            else:
                spans.append((start + lead, start + lead + len(piece.strip())))
        start = match.end() if match else len(text)
    return spans


def cited_numbers(sentence: str) -> list[int]:
    """The [n] a sentence cites, in order; brackets inside inline code (`argv[1]`) are the code's."""
    found = _MARKER.findall(INLINE_CODE.sub("", sentence))
    return list(dict.fromkeys(int(n) for group in found for n in re.split(r"\s*[,;]\s*", group)))


def check_answer(
    text: str, sources: Sequence[Hit], vectors: SentenceVectors, *, creator: Creator | None = None
) -> AnswerCheck:
    """CPU-bound (may embed answer sentences; source sentences are cached): call from a worker thread.

    Words decide first: a sentence whose facts are not all stated is unsupported, and one whose words all
    stand in one span of the cited text is supported (score = that share); only the rest are embedded, which
    keeps the check to milliseconds for quoting answers and bounds it for paraphrasing ones."""
    spans = answer_sentences(text)
    refusals = refusal_spans(text)
    # Term and code lines read as headings (short, unpunctuated) but an answer quotes them ("-n, --dry-run: ..."):
    # every line is evidence.
    source_spans = [list(split_sentences(hit.text)) for hit in sources]
    flat = [(n, span) for n, found in enumerate(source_spans, start=1) for span in found]
    creator_names = name_words(creator)
    own_names = creator_names | {w for hit in sources for w in content_terms(hit.title)}
    cited_texts = _CitedTexts(sources)
    checked: list[CheckedSentence | None] = []
    pending: list[tuple[int, str, list[int], list[int], bool]] = []  # sentence, claim, cited, rows, facts ok
    for start, end in spans:
        claim = clean_claim_text(text[start:end]).strip()
        cited = cited_numbers(text[start:end])
        is_claim = _is_claim(claim, cited) and not any(a <= start and end <= b for a, b in refusals)
        valid = [n for n in cited if 1 <= n <= len(sources)]
        pool = valid if cited else list(range(1, len(sources) + 1))
        if not is_claim or not pool or not claim:
            checked.append(CheckedSentence(start, end, cited, None, not is_claim, 0.0, is_claim))
            continue
        rows = [i for i, (n, _) in enumerate(flat) if n in pool]
        facts_ok = _facts_stated(claim, cited_texts.read(pool), own_names)
        best, words = _best_by_words(claim, [flat[i] for i in rows], creator_names)
        quote = Quote(flat[rows[best]][0], flat[rows[best]][1].start, flat[rows[best]][1].end) if rows else None
        if len(valid) == len(cited) and rows and cited_texts.quotes(pool, claim):
            # Its words, figures and names among them, stand in this order in the source: every fact is stated there
            # (a subscript's "[0]" too, which reading the source's figures drops as a citation).
            checked.append(CheckedSentence(start, end, cited, quote, True, 1.0, True))
        elif not facts_ok or len(valid) < len(cited) or not rows:
            checked.append(CheckedSentence(start, end, cited, quote, False, round(_W_WORDS * words, 4), True))
        elif words >= _WORDS_DECIDE:
            checked.append(CheckedSentence(start, end, cited, quote, True, round(words, 4), True))
        else:
            pending.append((len(checked), claim, cited, rows, facts_ok))
            checked.append(None)
    if pending:
        # The answer's claims: mostly new text, kept apart from the source sentences' cache (sentences.py).
        claim_vectors = vectors.encode([claim for _, claim, *_ in pending], remember=False)
        span_vectors = vectors.encode([span.text for _, span in flat])
        for (at, claim, cited, rows, _), vector in zip(pending, claim_vectors, strict=True):
            start, end = spans[at]
            quote, score = _best_support(claim, vector, [flat[i] for i in rows], span_vectors[rows], creator_names)
            checked[at] = CheckedSentence(start, end, cited, quote, score >= SUPPORT_THRESHOLD, score, True)
    return AnswerCheck([c for c in checked if c is not None])


def _claim_terms(claim: str, names: frozenset[str]) -> set[str]:
    """The words a source must share with a claim: not the creator's name ("Hazel uses…" attributes, it does
    not claim) and not numbers, which the exact check compares in any spelling."""
    return {t for t in content_terms(claim, drop=names) if not is_number_word(t)}


def _best_by_words(claim: str, spans: list[tuple[int, Span]], names: frozenset[str]) -> tuple[int, float]:
    """The span (index) holding most of the claim's words, and the share found in it and its neighbours."""
    if not spans:
        return 0, 0.0
    terms = _claim_terms(claim, names)
    span_terms = [content_terms(span.text) for _, span in spans]
    best = max(range(len(spans)), key=lambda i: (len(terms & span_terms[i]), -i))
    return best, _window_share(terms, spans, span_terms, best)


def _window_share(terms: set[str], spans: list[tuple[int, Span]], span_terms: list[set[str]], best: int) -> float:
    # The words may come from the sentences around the best one (an answer sentence often merges two), never
    # from anywhere in the source: "adds the salt at the start with the flour" is not backed by a text that
    # says "salt" in one place, "flour" in another and "start" in a third.
    window = set().union(
        *(span_terms[i] for i in range(max(best - 1, 0), min(best + 2, len(spans))) if spans[i][0] == spans[best][0])
    )
    return len(terms & window) / (len(terms) or 1)


def _is_claim(claim: str, cited: list[int]) -> bool:
    if quantities(claim) or cited:
        return not (_FRAMING.search(claim) and not quantities(claim))
    return not _FRAMING.search(claim) and len(content_terms(claim)) >= 3


def _best_support(
    claim: str, vector: np.ndarray, spans: list[tuple[int, Span]], span_vectors: np.ndarray, names: frozenset[str]
) -> tuple[Quote | None, float]:
    if not spans:
        return None, 0.0
    terms = _claim_terms(claim, names)
    span_terms = [content_terms(span.text) for _, span in spans]
    similarity = span_vectors @ vector
    local = [len(terms & found) / (len(terms) or 1) for found in span_terms]
    best = max(range(len(spans)), key=lambda i: float(similarity[i]) + 0.3 * local[i])
    score = _W_DENSE * float(similarity[best]) + _W_WORDS * _window_share(terms, spans, span_terms, best)
    number, span = spans[best]
    return Quote(number, span.start, span.end), round(score, 4)


@dataclass(frozen=True, slots=True)
class _CitedText:
    stated: list[Quantity]  # the quantities it states
    folded: str  # `fold`ed, for the names


class _CitedTexts:
    """The text of the sources a claim draws on, read once per set of sources: an answer's claims mostly cite the
    same few (all of them when uncited), and folding ~10 KB of sources again for each claim cost ~90 ms of a
    600-token answer's 38 claims."""

    def __init__(self, sources: Sequence[Hit]) -> None:
        self._sources = sources
        self._read: dict[tuple[int, ...], _CitedText] = {}
        self._runs: dict[int, str] = {}  # a source's words, folded, one space apart

    def quotes(self, pool: list[int], claim: str) -> bool:
        """Whether the claim's words run, in order, through one of these sources (`_VERBATIM_WORDS` words at least)."""
        words = _WORD.findall(fold(claim))
        if len(words) < _VERBATIM_WORDS:
            return False
        run = f" {' '.join(words)} "
        return any(run in self._words(n) for n in pool)

    def _words(self, number: int) -> str:
        found = self._runs.get(number)
        if found is None:
            found = self._runs[number] = f" {' '.join(_WORD.findall(fold(self._sources[number - 1].text)))} "
        return found

    def read(self, pool: list[int]) -> _CitedText:
        key = tuple(pool)
        found = self._read.get(key)
        if found is None:
            text = " ".join(self._sources[n - 1].text for n in pool)
            found = self._read[key] = _CitedText(quantities(text, with_one=True), fold(text))
        return found


def _facts_stated(claim: str, cited: _CitedText, own_names: frozenset[str] | set[str]) -> bool:
    if not all(quantity_stated(q, cited.stated) for q in quantities(claim)):
        return False
    return all(fold(name) in cited.folded or stem(name) in own_names for name in names(claim))
