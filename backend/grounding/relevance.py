"""Which source sentences answer a question: embedding similarity plus lexical evidence plus the kind of fact.

The question is read without its boilerplate ("what does Hazel say about") and without the scoped creator's
own name: those words are in the question but never in the answer, and they dominated a word-overlap score.
The same scores give the turn's retrieval confidence (coverage.py) and the extractive tier's picks.

A source is read as quotable sentences (quotable.py: each with the term lines it defines, the code it introduces,
the list it announces), its words and the question's by one set of rules (terms.py); a question asking for a name
(which option, which command, where) prefers sentences with code in them.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial

import numpy as np

from backend.grounding.facts import quantities
from backend.grounding.quotable import CODE_TOKEN, Quotable, quotable
from backend.grounding.sentences import SentenceVectors, Span
from backend.grounding.terms import content_terms, name_words, stem
from backend.stages import Creator, Hit

_BOILERPLATE = re.compile(
    r"\b(?:what|how|when|why|where)\s+(?:does|did|do|would|is|was)\s+(?P<subject>(?:[\w.'’]+\s+){1,4}?)"
    r"(?:say|think|write|suggest|recommend|teach|advise|explain|mention|describe|tell us|talk)s?"
    r"(?:\s+(?:about|on|regarding|of))?\b"
    r"|\baccording to\b|\bin (?:his|her|their) (?:content|articles?|writing|talks?|notes|posts?)\b"
    r"|\b(?:can|could) you (?:explain|tell me|describe)\b|\btell me(?: about| what)?\b|\bplease\b",
    re.IGNORECASE,
)


class FactKind(StrEnum):
    name = "name"  # which option / command / variable / file: a sentence or term line with code in it
    number = "number"  # how much / how hot / what ratio: a sentence with a quantity
    steps = "steps"  # how do I: instructions
    reason = "reason"  # why
    definition = "definition"  # what is
    general = "general"


_KINDS: list[tuple[FactKind, re.Pattern[str]]] = [
    (
        FactKind.name,
        re.compile(
            r"^where\b|\b(?:which|what)(?:'s| is| are)?(?: the| a)?(?: \w+){0,2}? "
            r"(?:option|flag|switch|command|variable|setting|key|file|directory|format|argument|parameter|function|class|method|package|tool|program|field|"
            r"keyword|macro|header|environment variable|config(?:uration)? (?:variable|option|key))s?\b",
            re.IGNORECASE,
        ),
    ),
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
            r"\bhow (?:do|should|can|would|does) (?:i|you|we|one|he|she|they)\b|\bhow can\b|\bhow to\b|\bsteps?\b"
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
    r"^(?:here is|here's|so let me|let me tell|let's|lots of you asked|people ask|this is the|now,)"
    # A cross-reference and nothing else ("See Section 9.1.1, “Recording ...”.", "See git-config(1)."): a pointer.
    r"|^(?:see|refer to)\s+(?:also\s+)?(?:(?:section|chapter|table|figure|appendix)\s+[\dA-Z][\d.]*|[\w.-]+\(\d\w*\))"
    r"[^.;]*\.?$",
    re.IGNORECASE,
)
ANAPHOR = re.compile(r"^(?:that|this|these|those|it|its|he|she|they|their|at that|which|there)\b", re.IGNORECASE)
# "The script updates ..." after "... to run a script daily": a thing the sentence before introduced.
_DEFINITE = re.compile(r"^the ([a-z]{3,})\b", re.IGNORECASE)
# A demonstrative a few words in ("If the script exits with this code, ...", "In such a case, ..."): the thing it
# points at is named in the sentence before. Not "that" (mostly "Note that ..."), nor "this is"/"these are".
_POINTS_BACK = re.compile(
    r"^(?:[\w'’,-]+\s+){1,5}(?:this|these|those|such(?:\s+an?)?)\s+(?!(?:is|are|was|were|will|can|may|means)\b)[a-z]",
    re.IGNORECASE,
)


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
    label: str = ""  # the term line(s) it defines ("-u, --include-untracked"): quoted with it
    code: str = ""  # the code line(s) it introduces when it ends with a colon: quoted with it
    items: tuple[Span, ...] = ()  # the list it announces ("There are three ... bits." then the three): quoted with it
    earlier: Span | None = None  # the one before `previous`: quoted too when `previous` leans on it
    lead: Span | None = None  # its term description's first sentence when it is a later one: quoted before it
    # The next sentence when this one is misread without it: it names (in code) the thing this one is about, for a
    # question asking for a name, or it denies this one ("... these two are synonyms." "They are not."): quoted after.
    completed_by: Span | None = None

    @property
    def is_brief(self) -> bool:
        """A short sentence without a number ("The float test gets mentioned a lot."): the next one says more."""
        return self.following is not None and len(self.span.text.split()) < 10 and not quantities(self.span.text)

    @property
    def leans_back(self) -> bool:
        """Opens with a word pointing at the sentence before ("That liquid is called hooch."), or points at it a few
        words in ("If the script exits with this code, ..."): quote both."""
        return self.previous is not None and leans_on(self.span.text, self.previous.text)

    @property
    def leaning(self) -> list[Span]:
        """The sentences it leans on, in reading order: the one before, and the one before that when the one before
        leans on it in turn ("The first of these tools is apticron. Its main effect is to run a script daily. The
        script updates ...")."""
        if not self.leans_back or self.previous is None:
            return []
        if self.earlier is not None and leans_on(self.previous.text, self.earlier.text):
            return [self.earlier, self.previous]
        return [self.previous]


# A pronoun early in a sentence ("You can check it using checkbashisms(1)."): it is about the sentence before's thing.
_REFERS_BACK = re.compile(r"^(?:\S+\s+){0,6}?(?:it|them|this|these|those)\b", re.IGNORECASE)


# A sentence denying the one before: "They are not — these two options mean very different things.", "This is not
# the case.", "That is wrong."
_DENIES = re.compile(
    r"^(?:they|it|this|that|these|those)\s+(?:is|are|was|were|does|do|did|has|have)(?:n't|\s+not\b|\s+never\b)"
    r"|^(?:this|that|it)\s+is\s+(?:wrong|false|incorrect|a myth|a misconception)\b",
    re.IGNORECASE,
)


def _completed_by(question: Question, read: Quotable, following: Span | None) -> Span | None:
    """The sentence after `read` when `read` alone would mislead or leave out what is asked: it denies `read`, or
    (for a question asking for a name) `read` names nothing and it names the thing `read` is about ("Avoid writing
    a shell script with bashisms ..." then "You can check it using checkbashisms(1).")."""
    if following is None:
        return None
    if _DENIES.match(following.text):
        return following
    if question.kind is not FactKind.name or not CODE_TOKEN.search(following.text):
        return None
    if CODE_TOKEN.search(" ".join((read.label, read.span.text, read.code))):
        return None
    return following if _REFERS_BACK.match(following.text) or leans_on(following.text, read.span.text) else None


def leans_on(text: str, before: str) -> bool:
    """`text` points at the sentence `before` it: it opens with a pointing word ("That liquid is called hooch."),
    points a few words in ("If the script exits with this code, ..."), or opens with a thing `before` introduced
    ("The script ..." after "... a script ...")."""
    if ANAPHOR.match(text) is not None or _POINTS_BACK.match(text) is not None:
        return True
    definite = _DEFINITE.match(text)
    return (
        definite is not None and re.search(rf"\b(?:a|an) (?:\w+ )?{definite[1]}\b", before, re.IGNORECASE) is not None
    )


def _drop_boilerplate(question: str, match: re.Match[str]) -> str:
    """ "What does Hazel say about starters" asks about starters; "What does the oven diary say?" asks about the
    oven diary: the words between the verb and "say" are the speaker only when a topic follows."""
    subject = match.group("subject")
    if subject is None or content_terms(question[match.end() :]):
        return " "
    return f" {subject}"


# A comparison's own words ("the difference between A and B", "how is A different from B"): what it asks about is
# A and B; a source sentence saying "difference" or "between" is not evidence of answering it.
_COMPARES = re.compile(r"\b(?:differen(?:ce|ces|t)|differs?|compar(?:e|ed|es|ing|ison)|versus|vs)\b", re.IGNORECASE)
_COMPARISON_WORDS = frozenset(
    map(stem, "difference differences different differ differs compare compared comparing comparison versus vs".split())
) | {"between"}


def read_question(question: str, *, creator: Creator | None, context: str = "", context_term: float = 0.5) -> Question:
    """`context`: the earlier question(s) a follow-up leans on, its words counting `context_term` each (the question's
    own count 1)."""
    names = name_words(creator)
    focus = _BOILERPLATE.sub(partial(_drop_boilerplate, question), question)
    if names:
        focus = " ".join(w for w in focus.split() if stem(w.strip("?,.!;:'\"")) not in names)
    focus = " ".join(focus.split()) or question
    terms = dict.fromkeys(content_terms(context, drop=names), context_term) if context else {}
    framing = _COMPARISON_WORDS if _COMPARES.search(focus) else frozenset()
    own = content_terms(focus, drop=names | framing)
    terms.update(dict.fromkeys(own or content_terms(focus, drop=names), 1.0))
    kind = next((kind for kind, pattern in _KINDS if pattern.search(question)), FactKind.general)
    units: frozenset[str] = frozenset()
    if kind is FactKind.number:
        units = frozenset().union(*(u for pattern, u in _UNIT_HINTS if pattern.search(question)))
    return Question(text=question, focus=focus, terms=terms, kind=kind, units=units)


# Compound questions: two questions joined ("what flour does she use, and how long does she ferment it?").
_JOINED = re.compile(
    r"\s*;\s*|,?\s+and\s+(?=(?:how|what|which|where|when|why|who|whose|is|are|does|do|did|can|should)\b)",
    re.IGNORECASE,
)
# Comparisons: "the difference between A and B", "should I use A or B?".
_BETWEEN = re.compile(r"\bbetween\s+(?P<a>.+?)\s+and\s+(?P<b>.+?)\s*(?:[?.!]|$)", re.IGNORECASE)
_EITHER = re.compile(
    r"^(?P<pre>(?:which|should|would|is|do|does|can)\b.*?\b(?:use|choose|prefer|pick|run|better|is it)\s+)"
    r"(?P<a>[^,?;]{1,40}?)\s+or\s+(?P<b>[^,?;]{1,40}?)\s*(?:[?.!]|$)",
    re.IGNORECASE,
)
_SECOND_PERSON = {"you": "I", "your": "my", "yours": "mine", "yourself": "myself", "you're": "I'm", "you've": "I've"}
_YOU = re.compile(r"\b(?:" + "|".join(map(re.escape, _SECOND_PERSON)) + r")\b", re.IGNORECASE)


_ELLIPTICAL = re.compile(r"^\s*(?:and|or|but|what about|how about|same for)\b", re.IGNORECASE)


def is_elliptical(question: str) -> bool:
    """A follow-up that leans on the question before for its meaning ("And for IPv6?", "What about the ignored
    ones?"): it opens with a conjunction, or says almost nothing of its own."""
    return _ELLIPTICAL.match(question) is not None or len(content_terms(question)) < 2


def question_parts(question: str) -> list[str]:
    """The questions a compound or comparing question holds, each to be answered with its own sentence; one
    part (the question) when it is neither."""
    between = _BETWEEN.search(question)
    if between:
        return _sides("", between["a"], between["b"])
    either = _EITHER.search(question)
    if either:
        return _sides(either["pre"], either["a"], either["b"])
    parts = [part.strip(" ,;") for part in _JOINED.split(question)]
    parts = [part for part in parts if content_terms(part)]
    return parts if len(parts) > 1 else [question]


def _sides(lead: str, a: str, b: str) -> list[str]:
    """ "a hard or a symbolic link": the shorter side takes the longer one's last word ("a hard link")."""
    if len(a.split()) < len(b.split()) and b.split()[-1] not in a.split():
        a = f"{a} {b.split()[-1]}"
    elif len(b.split()) < len(a.split()) and a.split()[-1] not in b.split():
        b = f"{b} {a.split()[-1]}"
    return [f"{lead}{a}", f"{lead}{b}"]


def as_asked_of(question: Question, creator: Creator | None) -> Question:
    """A question put to a creator in the second person ("what is your starter called?") asked as their content
    says it ("my starter"): the focus that is embedded, in the creator's voice. Unscoped questions are unchanged."""
    if creator is None or not _YOU.search(question.focus):
        return question
    focus = _YOU.sub(lambda m: _SECOND_PERSON[m[0].lower()], question.focus)
    return dataclasses.replace(question, focus=focus)


def _kind_bonus(question: Question, text: str) -> float:
    if question.kind is FactKind.number:
        found = quantities(text, with_one=True)
        if not found:
            return 0.0
        return _KIND_BONUS + (_UNIT_BONUS if question.units and any(q.unit in question.units for q in found) else 0)
    if question.kind is FactKind.name:
        return _KIND_BONUS if CODE_TOKEN.search(text) else 0.0
    if question.kind is FactKind.steps:
        return _KIND_BONUS if _STEP_WORDS.search(text) or CODE_TOKEN.search(text) else 0.0
    if question.kind is FactKind.reason:
        return _KIND_BONUS if _REASON_WORDS.search(text) else 0.0
    if question.kind is FactKind.definition:
        return _KIND_BONUS / 2 if _DEFINITION_WORDS.search(text) else 0.0
    return 0.0


@dataclass(frozen=True, slots=True)
class _Row:
    source: int  # 1-based citation number
    read: Quotable  # the sentence and what it carries along (quotable.py)
    relevance: float
    vector: np.ndarray


def _read_rows(
    question: Question,
    sources: Sequence[Hit],
    vectors: SentenceVectors | None,
    context_focus: str,
    context_weight: float = 0.5,
) -> list[_Row]:
    """Every quotable sentence of `sources` with its relevance (meaning plus the question's rarer words).

    A sentence is read with its context at half weight: the heading it sits under and the sentence before it
    ("That liquid is called hooch" answers a question whose words are in the sentence before)."""
    rows = [
        (number, read)
        for number, hit in enumerate(sources, start=1)
        for read in quotable(hit.text, hit.heading, hit.title)
    ]
    if not rows:
        return []
    queries = [question.focus, *([context_focus] if context_focus else [])]
    texts = [read.span.text for _, read in rows]
    previous_texts = [read.previous.text if read.previous else "" for _, read in rows]
    encoded = [*texts, *(t for t in previous_texts if t)]
    # Without a model (still loading) meaning scores 0 for every sentence: words and kind of fact decide.
    if vectors is not None:
        asked, matrix = vectors.encode_questions(queries), vectors.encode(encoded)
    else:
        asked, matrix = np.zeros((len(queries), 1), dtype=np.float32), np.zeros((len(encoded), 1), dtype=np.float32)
    query = asked[0] + (context_weight * asked[1] if context_focus else 0)
    query = query / (float(np.linalg.norm(query)) or 1.0)
    own = matrix[: len(rows)]
    dense = (own @ query).tolist()
    extra = iter((matrix[len(rows) :] @ query).tolist())
    term_sets = [read.terms for _, read in rows]
    total = len(rows)
    weights = question.terms.items()
    idf = {t: math.log(1 + total / (1 + sum(t in ts for ts in term_sets))) for t in question.terms}
    wanted = sum(idf[t] * w for t, w in weights) or 1.0
    asked_terms = question.terms.keys()
    read: list[_Row] = []
    for (number, q), similarity, vector in zip(rows, dense, own, strict=True):
        prev, context, terms = q.previous, q.context, q.terms
        if prev is not None and prev.text:  # its vector is among `encoded`, in this order
            similarity = max(similarity, 0.8 * similarity + 0.2 * next(extra))
        lexical = 0.0
        if not (terms.isdisjoint(asked_terms) and context.isdisjoint(asked_terms)):  # most sentences share none
            lexical = sum(idf[t] * w * (1.0 if t in terms else 0.5 if t in context else 0.0) for t, w in weights)
            lexical /= wanted
        relevance = _W_DENSE * similarity + _W_LEXICAL * lexical
        read.append(_Row(number, q, relevance, vector))
    return read


def best_relevance(
    question: Question,
    sources: Sequence[Hit],
    vectors: SentenceVectors | None,
    *,
    context_focus: str = "",
    context_weight: float = 0.5,
) -> float:
    """The relevance of the best source sentence (0 without one): the turn's confidence (coverage.py), without
    ordering every sentence as `rank` does for the extractive tier. CPU-bound on uncached sentences."""
    rows = _read_rows(question, sources, vectors, context_focus, context_weight)
    return max((row.relevance for row in rows), default=0.0)


def rank(
    question: Question,
    sources: Sequence[Hit],
    vectors: SentenceVectors | None,
    *,
    context_focus: str = "",
    context_weight: float = 0.5,
) -> list[Candidate]:
    """Every quotable sentence of `sources`, best first. CPU-bound on uncached sentences: call from a thread.
    `context_weight`: how much the earlier question counts in the meaning compared (1: an elliptical follow-up)."""
    rows = _read_rows(question, sources, vectors, context_focus, context_weight)
    following = {
        (a.source, a.read.span.start): b.read.span
        for a, b in itertools.pairwise(rows)
        if a.source == b.source and b.read.previous is a.read.span
    }
    found = [
        Candidate(
            row.source,
            q.span,
            row.relevance,
            row.relevance
            + _kind_bonus(question, " ".join((q.label, q.span.text, q.code)))
            - _RANK_STEP * (row.source - 1)
            - _form_penalty(q.span.text),
            row.vector,
            q.previous,
            after,
            q.label,
            q.code,
            q.items,
            q.earlier,
            _unless_signpost(q.lead),
            _completed_by(question, q, after),
        )
        for row in rows
        for q in (row.read,)
        for after in (_unless_signpost(following.get((row.source, q.span.start))),)
    ]
    found.sort(key=lambda c: (-c.score, c.source, c.span.start))
    return found


def _unless_signpost(span: Span | None) -> Span | None:
    """A sentence quoted along with a pick, unless it only points elsewhere ("See githooks(5) for more
    information."): that says nothing."""
    return span if span is None or not _SIGNPOST.search(span.text) else None


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
