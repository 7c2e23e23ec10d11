"""Which source sentences answer a question: embedding similarity plus lexical evidence plus the kind of fact.

The question comes read by question.py: without its boilerplate ("what does Hazel say about") and without the
scoped creator's own name, since those words are in the question but never in the answer and they dominated a
word-overlap score. The same scores give the turn's retrieval confidence (coverage.py) and the extractive tier's
picks; a picked sentence carries along what it leans on or is completed by (`Candidate.leaning`, `completed_by`).

A source is read as quotable sentences (quotable.py: each with the term lines it defines, the code it introduces,
the list it announces), its words and the question's by one set of rules (terms.py); a question asking for a name
(which option, which command, where) prefers sentences with code in them.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from backend.grounding.facts import quantities
from backend.grounding.leaning import CROSS_REFERENCE, SIGNPOST, completed_by, leans_on, unless_signpost
from backend.grounding.question import Question
from backend.grounding.quotable import Quotable, quotable
from backend.grounding.sentence_form import form_penalty, kind_bonus, row_bonus
from backend.grounding.sentences import SentenceVectors, Span
from backend.stages import Hit

# Weights of the sentence relevance: similarity of meaning, then the question's rarer words present (the kind of fact
# and the form come after, from sentence_form.py).
_W_DENSE = 0.55
_W_LEXICAL = 0.45
_RANK_STEP = 0.004  # the retriever's order breaks near-ties
# A sentence's meaning blended with its section heading's, when the heading is the closer of the two to the question
# ("When we get back I do three feeds ..." under "Waking him after the fridge"): the extractive tier's order only,
# never coverage's confidence, where a heading on the asked topic made an unanswerable question look answered
# (gitdocs: one more missed refusal). Chosen across the four answer sets (BENCHMARKS.md, "Answer quality").
_HEADING_WEIGHT = 0.35


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
    example: tuple[str, str] | None = None  # a bare "Example:" line after it and its code (quotable.py): quoted next

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
    # A line giving an entry's value ("Default: False") is as close to the question as the entry's first sentence.
    at = {(number, q.span.start): i for i, (number, q) in enumerate(rows)}
    for i, (number, q) in enumerate(rows):
        if q.states_a_value and q.lead is not None and (number, q.lead.start) in at:
            dense[i] = max(dense[i], dense[at[(number, q.lead.start)]])
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
            + kind_bonus(question, q.whole)
            + row_bonus(q, asked_terms)
            - _RANK_STEP * (row.source - 1)
            - form_penalty(q.span.text),
            row.vector,
            q.previous,
            after,
            q.label,
            q.code,
            q.items,
            q.earlier,
            # A description's first sentence says what the term is, even as "This is the amount of time ...": only
            # a bare cross-reference is left out.
            q.lead if q.lead is None or not CROSS_REFERENCE.search(q.lead.text) else None,
            completed_by(question, q, after),
            frozenset(q.terms & asked_terms),
            q.continued,
            tuple(
                (span.start, code_at[(row.source, span.start)])
                for span in (q.previous, q.earlier)
                if span is not None and (row.source, span.start) in code_at
            ),
            q.example,
        )
        for row in rows
        for q in (row.read,)
        for after in (unless_signpost(following.get((row.source, q.span.start))),)
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
    candidates = [c for c in candidates if not SIGNPOST.search(c.span.text)]  # "Here is how I..." answers nothing
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
