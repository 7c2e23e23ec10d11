"""Which source sentences answer a question: embedding similarity plus lexical evidence plus the kind of fact.

The question is read without its boilerplate ("what does Hazel say about") and without the scoped creator's
own name: those words are in the question but never in the answer, and they dominated a word-overlap score.
The same scores give the turn's retrieval confidence (coverage.py) and the extractive tier's picks.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache, partial

import numpy as np

from backend.grounding.facts import quantities
from backend.grounding.sentences import SentenceVectors, Span, split_sentences
from backend.stages import Creator, Hit

_WORD = re.compile(r"[\w']+", re.UNICODE)
_STOPWORDS = frozenset(
    "a an and are as at be been but by can could did do does doing for from had has have how i if in into is it "
    "its it's me my of on or our so than that the their them then there these they this those to was we were what "
    "when where which who whom why will with would you your about should tell explain say says said think thinks "
    "thought write writes wrote mention mentions talk talks describe describes suggest suggests advise advises "
    "please know any some much many use uses using used get make way best she he her his him one also just there's "
    "what's does doesn't don't".split()
)
_BOILERPLATE = re.compile(
    r"\b(?:what|how|when|why|where)\s+(?:does|did|do|would|is|was)\s+(?P<subject>(?:[\w.'’]+\s+){1,4}?)"
    r"(?:say|think|write|suggest|recommend|teach|advise|explain|mention|describe|tell us|talk)s?"
    r"(?:\s+(?:about|on|regarding|of))?\b"
    r"|\baccording to\b|\bin (?:his|her|their) (?:content|articles?|writing|talks?|notes|posts?)\b"
    r"|\b(?:can|could) you (?:explain|tell me|describe)\b|\btell me(?: about| what)?\b|\bplease\b",
    re.IGNORECASE,
)


class FactKind(StrEnum):
    number = "number"  # how much / how hot / what ratio: a sentence with a quantity
    steps = "steps"  # how do I: instructions
    reason = "reason"  # why
    definition = "definition"  # what is
    general = "general"


_KINDS: list[tuple[FactKind, re.Pattern[str]]] = [
    (
        FactKind.number,
        re.compile(
            r"\bhow (?:much|many|long|hot|warm|cold|often|big|heavy|wet|salty|far|sour)\b|\bat what\b"
            r"|\bwhat(?:'s| is| are)? (?:the )?(?:temperature|ratio|percentage|percent|proportion|hydration|"
            r"weight|amount|number|time|ph|range|feed|salt level|core temperature)\b|\bwhich (?:temperature|ratio)\b",
            re.IGNORECASE,
        ),
    ),
    (
        FactKind.steps,
        re.compile(
            r"\bhow (?:do|should|can|would|does) (?:i|you|we|one|he|she|they)\b|\bhow to\b|\bsteps?\b"
            r"|\bwhat (?:can|should|do) (?:i|you|we) do\b"
            r"|\bwalk me through\b|\bprocess\b|\bmethod\b|\bway to\b",
            re.IGNORECASE,
        ),
    ),
    (FactKind.reason, re.compile(r"\bwhy\b|\bwhat (?:happens|causes)\b|\bwhat does \w+ do\b", re.IGNORECASE)),
    (FactKind.definition, re.compile(r"\bwhat(?:'s| is| are)\b|\bdefine\b|\bmeaning of\b", re.IGNORECASE)),
]
_UNIT_HINTS: list[tuple[re.Pattern[str], frozenset[str]]] = [
    (re.compile(r"hot|warm|cold|temperature|degrees", re.I), frozenset({"°C"})),
    (re.compile(r"how long|time|hours|minutes|how often", re.I), frozenset({"h", "min", "day", "week", "s"})),
    (re.compile(r"percent|percentage|hydration|salt", re.I), frozenset({"%", "g"})),
]
_STEP_WORDS = re.compile(
    r"^(?:add|mix|feed|fold|lift|lay|turn|slide|put|shape|bake|weigh|leave|let|keep|wet|use|divide|start|pour|"
    r"dissolve|make|give|set|heat|hold|pre-shape|final|then|first|next|after|once|cover|place|dip|scrape|label|"
    r"if you|when we|when you|pour|feed)\b|\b(?:then|until|every|after|before|feeds?)\b",
    re.IGNORECASE,
)
_REASON_WORDS = re.compile(r"\b(?:because|so that|which means|that is why|this is why|the result|so a|since)\b", re.I)
_DEFINITION_WORDS = re.compile(r"\b(?:is|are|means|called|named)\b", re.I)

# Weights of the sentence score: similarity of meaning, then the question's rarer words present, then kind.
_W_DENSE = 0.55
_W_LEXICAL = 0.45
_KIND_BONUS = 0.08
_UNIT_BONUS = 0.04
_RANK_STEP = 0.004  # the retriever's order breaks near-ties
_FORM_PENALTY = 0.1
_SIGNPOST = re.compile(
    r"^(?:here is|here's|so let me|let me tell|let's|lots of you asked|people ask|this is the|now,)", re.IGNORECASE
)
ANAPHOR = re.compile(r"^(?:that|this|these|those|it|he|she|they|at that|which|there)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Question:
    text: str  # as asked
    focus: str  # without boilerplate and the creator's name: what gets embedded
    terms: dict[str, float]  # content terms -> weight (1 for the question, less for follow-up context)
    kind: FactKind
    units: frozenset[str]  # units a number question expects ("how hot" -> °C)


@dataclass(frozen=True, slots=True)
class Candidate:
    source: int  # 1-based citation number
    span: Span
    relevance: float  # dense + lexical, 0..1-ish: the confidence measure
    score: float  # relevance plus the kind-of-fact preference: the extractive tier's order
    vector: np.ndarray
    previous: Span | None = None  # the sentence before it in the same source, if any
    following: Span | None = None  # and the one after it

    @property
    def is_brief(self) -> bool:
        """A short sentence without a number ("The float test gets mentioned a lot."): the next one says more."""
        return self.following is not None and len(self.span.text.split()) < 10 and not quantities(self.span.text)

    @property
    def leans_back(self) -> bool:
        """Opens with a word pointing at the sentence before ("That liquid is called hooch."): quote both."""
        return self.previous is not None and ANAPHOR.match(self.span.text) is not None


def fold(text: str) -> str:
    """Lowercase without accents, so "Inês" and "Ines" are one word."""
    if text.isascii():  # nothing to decompose or drop (ASCII is its own NFKD), at C speed instead of a char walk
        return text.lower()
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


def stem(word: str) -> str:
    """A light suffix strip, so "waking" meets "wake" and "feeds" meets "fed"-free "feed"."""
    word = fold(word).removesuffix("'s").removesuffix("’s")
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    for suffix in ("ing", "ed", "es", "s", "e"):
        if len(word) - len(suffix) >= 3 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def content_terms(text: str, *, drop: frozenset[str] = frozenset()) -> set[str]:
    return set(_text_terms(text) - drop) if drop else set(_text_terms(text))


@lru_cache(maxsize=50_000)
def _text_terms(text: str) -> frozenset[str]:
    # Cached: the same source sentences are read on every turn that retrieves them (the hot loop of rank()).
    terms = (_word_term(w) for w in _WORD.findall(text))
    return frozenset(t for t in terms if t is not None)


@lru_cache(maxsize=50_000)
def _word_term(word: str) -> str | None:
    if fold(word) in _STOPWORDS:
        return None
    term = stem(word)
    return term if term not in _STOPWORDS and (len(term) > 1 or term.isdigit()) else None


def name_words(creator: Creator | None) -> frozenset[str]:
    if creator is None:
        return frozenset()
    words = {stem(w) for w in _WORD.findall(f"{creator.name} {creator.slug.replace('-', ' ')}")}
    return frozenset(words | {"dr", "chef"})


def _drop_boilerplate(question: str, match: re.Match[str]) -> str:
    """ "What does Hazel say about starters" asks about starters; "What does the oven diary say?" asks about the
    oven diary: the words between the verb and "say" are the speaker only when a topic follows."""
    subject = match.group("subject")
    if subject is None or content_terms(question[match.end() :]):
        return " "
    return f" {subject}"


def read_question(question: str, *, creator: Creator | None, context: str = "") -> Question:
    names = name_words(creator)
    focus = _BOILERPLATE.sub(partial(_drop_boilerplate, question), question)
    if names:
        focus = " ".join(w for w in focus.split() if stem(w.strip("?,.!;:'\"")) not in names)
    focus = " ".join(focus.split()) or question
    terms = dict.fromkeys(content_terms(context, drop=names), 0.5) if context else {}
    terms.update(dict.fromkeys(content_terms(focus, drop=names), 1.0))
    kind = next((kind for kind, pattern in _KINDS if pattern.search(question)), FactKind.general)
    units: frozenset[str] = frozenset()
    if kind is FactKind.number:
        units = frozenset().union(*(u for pattern, u in _UNIT_HINTS if pattern.search(question)))
    return Question(text=question, focus=focus, terms=terms, kind=kind, units=units)


def _kind_bonus(question: Question, text: str) -> float:
    if question.kind is FactKind.number:
        found = quantities(text, with_one=True)
        if not found:
            return 0.0
        return _KIND_BONUS + (_UNIT_BONUS if question.units and any(q.unit in question.units for q in found) else 0)
    if question.kind is FactKind.steps:
        return _KIND_BONUS if _STEP_WORDS.search(text) else 0.0
    if question.kind is FactKind.reason:
        return _KIND_BONUS if _REASON_WORDS.search(text) else 0.0
    if question.kind is FactKind.definition:
        return _KIND_BONUS / 2 if _DEFINITION_WORDS.search(text) else 0.0
    return 0.0


@dataclass(frozen=True, slots=True)
class _Row:
    source: int  # 1-based citation number
    span: Span
    previous: Span | None  # the sentence before it in the same source
    context: frozenset[str]  # the terms of its heading and of the previous sentence
    terms: frozenset[str]
    relevance: float
    vector: np.ndarray


@lru_cache(maxsize=4096)
def _quotable(text: str, heading: str) -> tuple[tuple[Span, Span | None, frozenset[str], frozenset[str]], ...]:
    """A source's quotable sentences, each with the one before it, its context's terms and its own terms. Cached:
    the same chunks come back turn after turn, and reading them again was a fifth of a coverage check (py-spy)."""
    read: list[tuple[Span, Span | None, frozenset[str], frozenset[str]]] = []
    context_of_heading = _text_terms(heading)
    previous: Span | None = None
    for span in split_sentences(text):
        if span.is_heading:
            context_of_heading, previous = _text_terms(span.text), None
            continue
        context = context_of_heading | _text_terms(previous.text) if previous else context_of_heading
        if not span.text.endswith("?"):  # a question in the source is not an answer
            read.append((span, previous, context, _text_terms(span.text)))
        previous = span
    return tuple(read)


def _read_rows(
    question: Question, sources: Sequence[Hit], vectors: SentenceVectors | None, context_focus: str
) -> list[_Row]:
    """Every quotable sentence of `sources` with its relevance (meaning plus the question's rarer words).

    A sentence is read with its context at half weight: the heading it sits under and the sentence before it
    ("That liquid is called hooch" answers a question whose words are in the sentence before)."""
    # source, sentence, previous, context terms, own terms
    rows = [(number, *read) for number, hit in enumerate(sources, start=1) for read in _quotable(hit.text, hit.heading)]
    if not rows:
        return []
    queries = [question.focus, *([context_focus] if context_focus else [])]
    texts = [span.text for _, span, _, _, _ in rows]
    previous_texts = [prev.text if prev else "" for _, _, prev, _, _ in rows]
    encoded = [*texts, *(t for t in previous_texts if t)]
    # Without a model (still loading) meaning scores 0 for every sentence: words and kind of fact decide.
    if vectors is not None:
        asked, matrix = vectors.encode_questions(queries), vectors.encode(encoded)
    else:
        asked, matrix = np.zeros((len(queries), 1), dtype=np.float32), np.zeros((len(encoded), 1), dtype=np.float32)
    query = asked[0] + (0.5 * asked[1] if context_focus else 0)
    query = query / (float(np.linalg.norm(query)) or 1.0)
    own = matrix[: len(rows)]
    dense = (own @ query).tolist()
    extra = iter((matrix[len(rows) :] @ query).tolist())
    term_sets = [terms for *_, terms in rows]
    total = len(rows)
    weights = question.terms.items()
    idf = {t: math.log(1 + total / (1 + sum(t in ts for ts in term_sets))) for t in question.terms}
    wanted = sum(idf[t] * w for t, w in weights) or 1.0
    asked_terms = question.terms.keys()
    read: list[_Row] = []
    for (number, span, prev, context, terms), similarity, vector in zip(rows, dense, own, strict=True):
        if prev is not None and prev.text:  # its vector is among `encoded`, in this order
            similarity = max(similarity, 0.8 * similarity + 0.2 * next(extra))
        lexical = 0.0
        if not (terms.isdisjoint(asked_terms) and context.isdisjoint(asked_terms)):  # most sentences share none
            lexical = sum(idf[t] * w * (1.0 if t in terms else 0.5 if t in context else 0.0) for t, w in weights)
            lexical /= wanted
        read.append(_Row(number, span, prev, context, terms, _W_DENSE * similarity + _W_LEXICAL * lexical, vector))
    return read


def best_relevance(
    question: Question, sources: Sequence[Hit], vectors: SentenceVectors | None, *, context_focus: str = ""
) -> float:
    """The relevance of the best source sentence (0 without one): the turn's confidence (coverage.py), without
    ordering every sentence as `rank` does for the extractive tier. CPU-bound on uncached sentences."""
    return max((row.relevance for row in _read_rows(question, sources, vectors, context_focus)), default=0.0)


def rank(
    question: Question, sources: Sequence[Hit], vectors: SentenceVectors | None, *, context_focus: str = ""
) -> list[Candidate]:
    """Every quotable sentence of `sources`, best first. CPU-bound on uncached sentences: call from a thread."""
    rows = _read_rows(question, sources, vectors, context_focus)
    following = {
        (a.source, a.span.start): b.span
        for a, b in itertools.pairwise(rows)
        if a.source == b.source and b.previous is a.span
    }
    found = [
        Candidate(
            row.source,
            row.span,
            row.relevance,
            row.relevance
            + _kind_bonus(question, row.span.text)
            - _RANK_STEP * (row.source - 1)
            - _form_penalty(row.span.text),
            row.vector,
            row.previous,
            following.get((row.source, row.span.start)),
        )
        for row in rows
    ]
    found.sort(key=lambda c: (-c.score, c.source, c.span.start))
    return found


def _form_penalty(text: str) -> float:
    """Signposts ("Here is how I...") and short fragments without a fact say little on their own."""
    penalty = 2.5 * _FORM_PENALTY if _SIGNPOST.search(text) else 0.0
    if len(text.split()) < 6 and not quantities(text, with_one=True):
        penalty += _FORM_PENALTY
    return penalty


def select(
    candidates: Sequence[Candidate], *, limit: int, margin: float = 0.15, diversity: float = 0.3
) -> list[Candidate]:
    """Maximal marginal relevance: good sentences that do not repeat each other (a talk and an article often
    state the same fact), within `margin` of the best; returned in reading order (source, then position)."""
    if not candidates:
        return []
    candidates = [c for c in candidates if not _SIGNPOST.search(c.span.text)]  # "Here is how I..." answers nothing
    if not candidates:
        return []
    best = candidates[0].score
    pool = [c for c in candidates if c.score >= best - margin]
    picked: list[Candidate] = []
    while pool and len(picked) < limit:

        def marginal(c: Candidate) -> float:
            overlap = max((float(c.vector @ p.vector) for p in picked), default=0.0)
            return (1 - diversity) * c.score - diversity * overlap

        choice = max(pool, key=marginal)
        pool.remove(choice)
        if any(float(choice.vector @ p.vector) > 0.9 for p in picked):
            continue  # the same sentence again, from another source
        picked.append(choice)
    return sorted(picked, key=lambda c: (c.source, c.span.start))
