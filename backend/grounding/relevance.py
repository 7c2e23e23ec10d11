"""Which source sentences answer a question: embedding similarity plus lexical evidence plus the kind of fact.

The question comes read by question.py: without its boilerplate ("what does Hazel say about") and without the
scoped creator's own name, since those words are in the question but never in the answer and they dominated a
word-overlap score. The same scores give the turn's retrieval confidence (coverage.py) and the extractive tier's
picks; a picked sentence carries along what it leans on or is completed by (`Candidate.leaning`, `_completed_by`).

A source is read as quotable sentences (quotable.py: each with the term lines it defines, the code it introduces,
the list it announces), its words and the question's by one set of rules (terms.py); a question asking for a name
(which option, which command, where) prefers sentences with code in them.
"""

from __future__ import annotations

import heapq
import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from backend.grounding.facts import quantities
from backend.grounding.question import FactKind, Question
from backend.grounding.quotable import CODE_TOKEN, Quotable, quotable
from backend.grounding.sentences import SentenceVectors, Span
from backend.stages import Hit

# A sentence that orders what is done (a step). Not its opening verb: a list of them, written for the demo's recipes,
# never fired (the text it was matched against began with a space) and, fired, moved no fact on the five sets.
_STEP_WORDS = re.compile(r"\b(?:then|until|every|after|before|feeds?)\b", re.IGNORECASE)
_REASON_WORDS = re.compile(r"\b(?:because|so that|which means|that is why|this is why|the result|so a|since)\b", re.I)
_DEFINITION_WORDS = re.compile(r"\b(?:is|are|means|called|named)\b", re.I)

# Weights of the sentence score: similarity of meaning, then the question's rarer words present, then kind.
_W_DENSE = 0.55
_W_LEXICAL = 0.45
_KIND_BONUS = 0.08
_UNIT_BONUS = 0.04
_RANK_STEP = 0.004  # the retriever's order breaks near-ties
# A sentence's meaning blended with its section heading's, when the heading is the closer of the two to the question
# ("When we get back I do three feeds ..." under "Waking him after the fridge"): the extractive tier's order only,
# never coverage's confidence, where a heading on the asked topic made an unanswerable question look answered
# (gitdocs: one more missed refusal). Chosen across the four answer sets (BENCHMARKS.md, "Answer quality").
_HEADING_WEIGHT = 0.35
_FORM_PENALTY = 0.1
# A cross-reference and nothing else ("See Section 9.1.1, “Recording ...”.", "See git-config(1)."): a pointer.
_POINTER = (
    r"^(?:see|refer to)\s+(?:also\s+)?(?:(?:section|chapter|table|figure|appendix)\s+[\dA-Z][\d.]*|[\w.-]+\(\d\w*\))"
    r"[^.;]*\.?$"
)
_SIGNPOST = re.compile(
    r"^(?:here is|here's|so let me|let me tell|let's|lots of you asked|people ask|this is the|now,)|" + _POINTER,
    re.IGNORECASE,
)
_CROSS_REFERENCE = re.compile(_POINTER, re.IGNORECASE)
ANAPHOR = re.compile(
    r"^(?:that|this|these|those|it|its|he|she|they|their|at that|which|there|the above|the preceding)\b", re.IGNORECASE
)
# A connective that only means something against the sentence before: "Whereas a lightweight tag is simply a name
# for an object." (the sentence before says what an annotated tag holds), "Otherwise, ...", "In that case, ...", a
# next step ("Then on the publisher database:"), a step's other half ("And on the subscriber database:", introducing
# its code; an "And ..." sentence in prose stands on its own).
_CONNECTIVE = re.compile(
    r"^(?:then|whereas|otherwise|conversely|likewise|in (?:that|this|which|such a|either) case|if (?:so|not))\b"
    r"|^and\b[^.!?]*:$",
    re.IGNORECASE,
)
# "The script updates ..." after "... to run a script daily": a thing the sentence before introduced.
_DEFINITE = re.compile(r"^the ([a-z]{3,})\b", re.IGNORECASE)
# A demonstrative a few words in ("If the script exits with this code, ...", "In such a case, ..."): the thing it
# points at is named in the sentence before. Not "that" (mostly "Note that ..."), nor "this is"/"these are".
_POINTS_BACK = re.compile(
    r"^(?:[\w'’,-]+\s+){1,5}(?:this|these|those|such(?:\s+an?)?)\s+(?!(?:is|are|was|were|will|can|may|means)\b)[a-z]",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Candidate:
    source: int  # 1-based citation number
    span: Span
    relevance: float  # dense + lexical, 0..1-ish (coverage's confidence reads it without the heading's meaning)
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
    asked: frozenset[str] = frozenset()  # the question's terms (its context's included) the sentence itself has
    continued: tuple[tuple[str, str], ...] = ()  # the sentence going on after its code, with more code (quotable.py)
    # The code `previous` and `earlier` introduce, by their start: a sentence leaned on is quoted with its code ("And on
    # the subscriber database:" `CREATE SUBSCRIPTION ...` before "The above will start the replication process.").
    leaned_code: tuple[tuple[int, str], ...] = ()

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
    if CODE_TOKEN.search(read.whole):
        return None
    return following if _REFERS_BACK.match(following.text) or leans_on(following.text, read.span.text) else None


def leans_on(text: str, before: str) -> bool:
    """`text` points at the sentence `before` it: it opens with a pointing word ("That liquid is called hooch."),
    points a few words in ("If the script exits with this code, ..."), or opens with a thing `before` introduced
    ("The script ..." after "... a script ...")."""
    if ANAPHOR.match(text) is not None or _POINTS_BACK.match(text) is not None or _CONNECTIVE.match(text):
        return True
    definite = _DEFINITE.match(text)
    return (
        definite is not None and re.search(rf"\b(?:a|an) (?:\w+ )?{definite[1]}\b", before, re.IGNORECASE) is not None
    )


def _kind_bonus(question: Question, text: str) -> float:
    bonus = _KIND_BONUS if question.default and _STATES_DEFAULT.search(text) else 0.0
    return bonus + _kind_of_fact_bonus(question, text)


def _kind_of_fact_bonus(question: Question, text: str) -> float:
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
    *,
    ordering: bool = False,
) -> list[_Row]:
    """Every quotable sentence of `sources` with its relevance (meaning plus the question's rarer words).

    A sentence is read with its context at half weight: the heading it sits under and the sentence before it
    ("That liquid is called hooch" answers a question whose words are in the sentence before). For `ordering` (the
    extractive tier's order, not coverage's confidence, whose threshold was calibrated without these) its meaning is
    also blended with its section heading's, and the question is embedded at the model's own precision."""
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
    # The heading's last part, usually the chunk's own first line, whose vector was stored at ingest.
    sections = [sources[number - 1].heading.rsplit(">", 1)[-1].strip() if ordering else "" for number, _ in rows]
    heading_texts = list(dict.fromkeys(section for section in sections if section))
    encoded = [*texts, *(t for t in previous_texts if t), *heading_texts]
    # Without a model (still loading) meaning scores 0 for every sentence: words and kind of fact decide.
    if vectors is not None:
        asked, matrix = vectors.encode_questions(queries, full=ordering), vectors.encode(encoded)
    else:
        asked, matrix = np.zeros((len(queries), 1), dtype=np.float32), np.zeros((len(encoded), 1), dtype=np.float32)
    query = asked[0] + (context_weight * asked[1] if context_focus else 0)
    query = query / (float(np.linalg.norm(query)) or 1.0)
    own = matrix[: len(rows)]
    dense = (own @ query).tolist()
    after_previous = len(encoded) - len(heading_texts)
    extra = iter((matrix[len(rows) : after_previous] @ query).tolist())
    heading_similarity = dict(zip(heading_texts, (matrix[after_previous:] @ query).tolist(), strict=True))
    term_sets = [read.terms for _, read in rows]
    total = len(rows)
    weights = question.terms.items()
    idf = {t: math.log(1 + total / (1 + sum(t in ts for ts in term_sets))) for t in question.terms}
    wanted = sum(idf[t] * w for t, w in weights) or 1.0
    asked_terms = question.terms.keys()
    read: list[_Row] = []
    for (number, q), similarity, vector, section in zip(rows, dense, own, sections, strict=True):
        prev, context, terms = q.previous, q.context, q.terms
        if prev is not None and prev.text:  # its vector is among `encoded`, in this order
            similarity = max(similarity, 0.8 * similarity + 0.2 * next(extra))
        if section:
            blended = (1 - _HEADING_WEIGHT) * similarity + _HEADING_WEIGHT * heading_similarity[section]
            similarity = max(similarity, blended)
        lexical = 0.0
        if not (terms.isdisjoint(asked_terms) and context.isdisjoint(asked_terms)):  # most sentences share none
            lexical = sum(idf[t] * w * (1.0 if t in terms else 0.5 if t in context else 0.0) for t, w in weights)
            lexical /= wanted
        relevance = _W_DENSE * similarity + _W_LEXICAL * lexical
        read.append(_Row(number, q, relevance, vector))
    return read


def best_sentences(
    question: Question,
    sources: Sequence[Hit],
    vectors: SentenceVectors | None,
    *,
    limit: int,
    context_focus: str = "",
    context_weight: float = 0.5,
) -> list[tuple[float, str]]:
    """The `limit` most relevant source sentences, best first, as (relevance, the sentence with all it is quoted with,
    code): the turn's confidence is the first's (coverage.py), without the extractive tier's ordering (`rank`).
    CPU-bound on uncached sentences."""
    rows = _read_rows(question, sources, vectors, context_focus, context_weight)
    best = heapq.nlargest(limit, rows, key=lambda row: row.relevance)
    return [(row.relevance, row.read.whole) for row in best]


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
    rows = _read_rows(question, sources, vectors, context_focus, context_weight, ordering=True)
    asked_terms = question.terms.keys()
    following = {
        (a.source, a.read.span.start): b.read.span
        for a, b in itertools.pairwise(rows)
        if a.source == b.source and b.read.previous is a.read.span
    }
    code_at = {(row.source, row.read.span.start): row.read.code for row in rows if row.read.code}
    found = [
        Candidate(
            row.source,
            q.span,
            row.relevance,
            row.relevance
            + _kind_bonus(question, q.whole)
            + _row_bonus(q, asked_terms)
            - _RANK_STEP * (row.source - 1)
            - _form_penalty(q.span.text),
            row.vector,
            q.previous,
            after,
            q.label,
            q.code,
            q.items,
            q.earlier,
            # A description's first sentence says what the term is, even as "This is the amount of time ...": only
            # a bare cross-reference is left out.
            q.lead if q.lead is None or not _CROSS_REFERENCE.search(q.lead.text) else None,
            _completed_by(question, q, after),
            frozenset(q.terms & asked_terms),
            q.continued,
            tuple(
                (span.start, code_at[(row.source, span.start)])
                for span in (q.previous, q.earlier)
                if span is not None and (row.source, span.start) in code_at
            ),
        )
        for row in rows
        for q in (row.read,)
        for after in (_unless_signpost(following.get((row.source, q.span.start))),)
    ]
    found = _with_what_they_introduce(found)
    found.sort(key=lambda c: (-c.score, c.source, c.span.start))
    return found


def _with_what_they_introduce(found: list[Candidate]) -> list[Candidate]:
    """A sentence introducing code or a list that its chunk cut off after the colon ("... use the following
    commands:" closing the chunk) is quoted from the copy of it another source holds with what it introduces (the
    next chunk, which overlaps it): that copy takes the better score of the two, and the cut one is left out."""
    cut = {
        c.span.text: c for c in found if c.span.text.endswith(":") and c.following is None and not (c.code or c.items)
    }
    whole = {c.span.text: c for c in found if c.span.text in cut and (c.code or c.items)}
    if not whole:
        return found
    kept = [c for c in found if c is not cut.get(c.span.text) or c.span.text not in whole]
    for at, c in enumerate(kept):
        if whole.get(c.span.text) is c:
            lost = cut[c.span.text]
            kept[at] = replace(c, score=max(c.score, lost.score), relevance=max(c.relevance, lost.relevance))
    return kept


def _unless_signpost(span: Span | None) -> Span | None:
    """A sentence quoted along with a pick, unless it only points elsewhere ("See githooks(5) for more
    information."): that says nothing."""
    return span if span is None or not _SIGNPOST.search(span.text) else None


def _row_bonus(read: Quotable, asked: Iterable[str]) -> float:
    """A table row whose first cell names what the question asks about, under a column the question asks for
    ("What end-of-line code do DOS and Windows use?": the "MSDOS and Windows" row of the "EOL code" table) is the
    lookup the question is; terse, its meaning alone reads it low."""
    if not read.row_key or read.row_key.isdisjoint(asked) or read.columns.isdisjoint(asked):
        return 0.0
    return _KIND_BONUS


# A short sentence that names a literal carries its fact: 'Alternately, you can type "exit".', "Use `git stash -u`."
_NAMES_A_LITERAL = re.compile(rf"{CODE_TOKEN.pattern}|\"[^\"\s]{{1,40}}\"|“[^”\s]{{1,40}}”")


# A sentence saying what holds when nothing is said: for a question asking for a default.
_STATES_DEFAULT = re.compile(
    r"\bby default\b|\bdefaults? (?:to|is|value)\b|\bthe default\b|\bis assumed\b"
    r"|\bif (?:omitted|not (?:given|specified|set))\b",
    re.IGNORECASE,
)


def _form_penalty(text: str) -> float:
    """Signposts ("Here is how I...") and short fragments without a fact say little on their own."""
    penalty = 2.5 * _FORM_PENALTY if _SIGNPOST.search(text) else 0.0
    if len(text.split()) < 6 and not quantities(text, with_one=True) and not _NAMES_A_LITERAL.search(text):
        penalty += _FORM_PENALTY
    return penalty


def select(
    candidates: Sequence[Candidate],
    *,
    limit: int,
    margin: float = 0.2,
    diversity: float = 0.2,
    parallel: float | None = None,
) -> list[Candidate]:
    """Maximal marginal relevance: good sentences that do not repeat each other (a talk and an article often
    state the same fact), within `margin` of the best; returned in reading order (source, then position).
    `parallel`: a sentence this close in meaning to a pick, holding fewer of the question's terms than the pick
    does, says the same of something else ("Rye bread needs fifty minutes." after "Spelt bread needs forty
    minutes." for a question on spelt): it is left out and takes a pick's place, since what ranks below it is no
    better.

    Chosen on a grid across the four answer sets (`scripts.bench.answer_replay --select`, BENCHMARKS.md "Answer
    quality"): a second sentence on the asked thing falls outside a narrower margin of one matching the question's
    words closely, or loses to an unrelated one under more diversity for being on the topic of the first pick."""
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
        if parallel is not None and any(
            float(choice.vector @ p.vector) > parallel and choice.asked < p.asked for p in picked
        ):
            limit -= 1
            continue
        picked.append(choice)
    return sorted(picked, key=lambda c: (c.source, c.span.start))
