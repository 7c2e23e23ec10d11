"""Curated answers: a curator's answer, served first (the `curated` tier) when a visitor's question fits it.

A question fits an answer when it comes close enough to one of the answer's phrasings (`judge`):
- both are embedded with the retrieval model already loaded, as asked and as their focus (without boilerplate
  and the creator's name, question.read_question), and the closer of the two cosines counts;
- they must ask for the same kind of thing (`intent`): "when does Hazel add the salt" is not "how much salt";
- numbers both state must agree: the answer for a 500 g loaf is not the one for 1 kg;
- a word standing where the phrasing has another ("how much yeast" for "how much salt") is tried in the
  phrasing's place: when the swap alone makes them the same question, it is refused; otherwise the similarity
  the swap adds is taken off the score (settings `curated.substitution_penalty`), so a question that differs from
  the phrasing in what it is about never scores like one that differs in how it is worded; words are compared
  stemmed, irregular forms at their base ("fed" is "feed"), quotes off;
- except that a question whose every such word is one of the answer's own words (its text, its linked documents'
  titles: "starter" where the phrasing says "Bartholomew" and the answer "my sourdough starter") pays no penalty:
  the curator's answer vouches for the word. A swap that alone makes the two the same question is still refused.
The threshold and the penalty are calibrated on the answer eval sets (scripts/bench/curated.py, BENCHMARKS.md,
"Answer quality").

The service (`CuratedAnswers`) keeps every active answer's phrasings embedded in memory and re-reads them when
their SQL version moved (any replica's write bumps it), looking at most every `curated.refresh_seconds`; before a
match is served the answer is read again by its key (answers_store.serving), so an answer retired anywhere is
never served once its retirement committed.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

import anyio
import numpy as np

from backend.chat.prompt import CuratedMatch
from backend.curation import answers_store
from backend.curation.answers_store import CuratedView
from backend.errors import LorechatError
from backend.grounding.facts import quantities
from backend.grounding.question import read_question
from backend.grounding.terms import content_terms, name_words, stem
from backend.settings import CuratedSettings
from backend.stages import Creator
from backend.storage.repository import Sessions

log = logging.getLogger(__name__)

# Questions -> L2-normalized vectors, one row each, as the search embeds a question (embed_query).
EmbedQuestions = Callable[[Sequence[str]], np.ndarray]

# Two questions the same but for one word each (or two), where swapping those words in adds this much similarity:
# they are what the question is about ("salt" for "yeast"), so it is refused outright.
_SWAP_REFUSED = (0.1, 0.2)
# Related answers (follow-up suggestions): this close to the question, yet not the answer that fits it.
_RELATED = 0.45
# Starter questions are re-read at most this often per (creator, site), and kept for this many of them.
_STARTERS_SECONDS = 60.0
_STARTERS_KEPT = 1024
# Questions kept scored per answer index (AnswerIndex._ask): a turn's match and its follow-ups, across turns.
_ASKED_KEPT = 256

# The kind of thing a question asks for. Quantities (how much, how long, how hot, how old) are told apart from
# each other; a question naming several (time and temperature) asks for all of them.
_INTENTS: list[tuple[str, str]] = [
    ("origin", r"\bwhy is (?:it|this|that) called\b|\bwhere does (?:the|its|this|that) name\b|\borigin\b"
     r"|\bnamed after\b|\b(?:name|called)\b.*\bcome from\b"),
    ("temperature", r"\bhow (?:hot|warm|cold)\b"
     r"|\b(?:what|which|at what|what's the|what is the|what are the) (?:[\w']+ ){0,3}temperatures?\b"),
    ("duration", r"\bhow long\b|\bhow many (?:hours|minutes|days|weeks|months|years)\b|\bhow (?:fast|quickly|soon)\b"
     r"|\bwhat (?:is |are |'s )?(?:the )?(?:[\w']+ ){0,3}time\b"),
    ("age", r"\bhow old\b|\bwhat age\b|\bhow many years\b"),
    # "How long should a password be?": a length as often as a time; the two are told apart by what else is asked.
    ("length", r"\bhow long\b|\blength\b|\bhow many (?:characters|chars|bytes|bits|digits|letters|words|lines)\b"
     r"|\b(?:characters|bytes|digits) long\b"),
    ("frequency", r"\bhow often\b|\bhow frequently\b|\bhow many times\b"),
    ("amount", r"\bhow (?:much|many|big|heavy|salty|wet|acidic|sour|large|small)\b"
     r"|\b(?:what|which|in what|what's the|what is the|what are the) (?:[\w']+ ){0,3}(?:percentage|percent|ratio"
     r"|proportions?|amount|level|weight|size|hydration|ph|values?|quantity)\b|\bwhat (?:ph|hydration)\b"),
    ("when", r"^(?:so |and |but )?when\b(?![^?]*,)|\bat what (?:stage|point)\b|\bwhat stage\b"),
    ("reason", r"\bwhy\b|\bhow come\b|\bwhat causes?\b|\breason\b|\bwhat does it mean when\b|\bwhat'?s wrong\b"
     r"|\bhow (?:does|do|can|would) (?!(?:i|you|we|one)\b).{0,40}\b(?:make|cause|increase|decrease|affect|change"
     r"|lead to)\b"),
    ("howto", r"\bhow (?:do|can|should|would|could) (?:i|you|we|one)\b|\bhow to\b|\bsteps?\b|\bbest way\b"
     r"|\bwhat (?:can|should|do) (?:i|you|we) do\b|\bwhat now\b|\bwhat happens\b"
     r"|\bhow (?:is|are|does|do) (?:the )?(?:[\w']+ ){0,3}(?:fed|baked|made|shaped|handle|bake|make|prepared?)\b"),
    ("definition", r"\bwhat (?:is|are) (?:a|an|the)\b|\bwhat (?:is|are) [\w-]+\??$|\bwhat'?s (?:a|an)\b"
     r"|\bexplain\b|\bdefine\b|\bwhat does [\w\s-]+ mean\b|\bmeaning of\b|\bwhat does [\w\s-]+ (?:involve|measure)\b"),
    ("place", r"^(?:so |and |but )?where\b|\bwhere (?:do|does|did|can|could|should|would|is|are|was|were|will)\b"),
    ("yesno", r"^(?:does|do|is|are|can|could|should|will|would|did|has|have)\b|\bthink (?:of|about)\b|\breliable\b"),
]  # fmt: skip
_PATTERNS = [(name, re.compile(pattern, re.IGNORECASE)) for name, pattern in _INTENTS]
_ORDER = {name: at for at, (name, _) in enumerate(_INTENTS)}
_QUANTITIES = frozenset({"temperature", "duration", "age", "length", "frequency", "amount"})
_WEAK = frozenset({"definition", "yesno"})  # said by many questions that ask something more specific too
# Nouns that make a "how do I work out…" a quantity question.
_QUANTITY_NOUNS = [
    ("temperature", re.compile(r"\btemperatures?\b", re.IGNORECASE)),
    ("amount", re.compile(r"\b(?:ratio|percentage|hydration|proportions?)\b", re.IGNORECASE)),
]
# Kinds that paraphrases turn into each other.
_COMPATIBLE = {
    frozenset({"duration", "when"}),
    frozenset({"definition", "reason"}),
    frozenset({"origin", "place"}),
    frozenset({"age", "duration"}),  # "how old must objects be before gc prunes them" / "how long does gc keep them"
}
# Words that say what kind of thing is asked (the intent compares those) or nothing a question is about.
_GENERIC = frozenset(
    stem(word)
    for word in """percentage percent level ratio ratios proportion proportions amount quantity temperature temperatures
    degrees degree time hours hour minutes days weeks long stage point reason steps step process values value range
    recommend recommends suggest suggests aim aims prefer prefers use uses advise typical typically run runs put keep
    kept take took go goes went need want like happen happens stay come comes arrive arrives handle give work out add
    adds added start call called get mean means reach reached usual usually really actually still thing things kind
    way lot bit people ok okay right already command commands""".split()
)
_WORD = re.compile(r"[\w']+", re.UNICODE)
_FILE_WORDS = re.compile(r"[-_.]+")
# Irregular forms a suffix strip does not reach ("fed" is "feed"), keyed and valued by their stems.
_IRREGULAR = {
    stem(form): stem(base)
    for form, base in (
        pair.split("/")
        for pair in """fed/feed risen/rise grew/grow grown/grow froze/freeze frozen/freeze ate/eat eaten/eat
        bought/buy brought/bring chose/choose chosen/choose began/begin begun/begin spent/spend built/build held/hold
        slept/sleep wrote/write written/write dried/dry tried/try loaves/loaf knives/knife shelves/shelf
        children/child""".split()
    )
}


# Words the sources' relevance reads as a question's framing ("what does Hazel write about…"), left in a question
# only where they are what it asks about ("git describe", "write to a file"): read_question takes the framing out.
_ACTIONS = frozenset("describe describes write writes wrote mention mentions talk talks".split())
# A quote around a word ('annotated') is not part of it; an apostrophe inside one ("Hazel's", "don't") is.
_QUOTE = re.compile(r"(?<!\w)['‘’]|['‘’](?!\w)")


def terms_of(text: str, drop: frozenset[str] = frozenset()) -> frozenset[str]:
    """The words a question is about, normalised (stemmed, irregular forms to their base), without generic ones."""
    text = _QUOTE.sub(" ", text)
    actions = {stem(word) for word in _WORD.findall(text.lower()) if word in _ACTIONS}
    terms = {_IRREGULAR.get(term, term) for term in content_terms(text, drop=drop)}
    return frozenset(terms | actions) - _GENERIC - drop


def intent(question: str) -> frozenset[str]:
    """What the question asks for: the quantities it names, else its earliest specific kind, else "other"."""
    found = []
    for name, pattern in _PATTERNS:
        hit = pattern.search(question.strip())
        if hit:
            found.append((name in _WEAK, hit.start(), _ORDER[name], name))
    asked = frozenset(name for *_, name in found if name in _QUANTITIES)
    if asked:
        return asked
    primary = min(found)[3] if found else "other"
    if primary in ("howto", "other", "yesno", "definition"):
        nouns = frozenset(name for name, pattern in _QUANTITY_NOUNS if pattern.search(question))
        if nouns:
            return nouns
    return frozenset({primary})


def compatible(a: frozenset[str], b: frozenset[str]) -> bool:
    if a & b or "other" in a | b:
        return True
    if "yesno" in a | b:  # "does Hazel add the salt early?" may mean "when…", never "how much…"
        return not (a | b) & _QUANTITIES
    return any(frozenset({x, y}) in _COMPATIBLE for x in a for y in b)


@dataclass(frozen=True, slots=True)
class Reading:
    """A question as the matcher reads it."""

    text: str
    focus: str  # what is embedded besides the text: without boilerplate and the creator's name
    terms: frozenset[str]  # its content terms, stemmed, without generic words
    numbers: frozenset[tuple[float, str | None]]
    intent: frozenset[str]


def read(text: str, creator: Creator | None) -> Reading:
    names = name_words(creator)
    focus = read_question(text, creator=creator).focus
    terms = terms_of(focus, names)
    numbers = frozenset((q.value, q.unit) for q in quantities(text))
    return Reading(text=text, focus=focus, terms=terms, numbers=numbers, intent=intent(text))


def answer_words(answer: CuratedView, creator: Creator | None) -> frozenset[str]:
    """The words an answer speaks of: its text and its linked documents' titles (else their file names)."""
    titles = answer.titles or [_FILE_WORDS.sub(" ", d.rsplit("/", 1)[-1].rsplit(".", 1)[0]) for d in answer.documents]
    return terms_of(" ".join([answer.answer, *titles]), name_words(creator))


def _near(term: str, others: frozenset[str]) -> bool:
    """The same word in another form ("ferment"/"fermentation", "cheesy"/"cheese"): a long common prefix."""
    for other in others:
        common = 0
        for x, y in zip(term, other, strict=False):
            if x != y:
                break
            common += 1
        if common >= 5 or (common >= 4 and common == min(len(term), len(other))):
            return True
    return False


def lonely(a: Reading, b: Reading, covered: frozenset[str] = frozenset()) -> list[str]:
    """The words of `a` (as written) whose terms `b` has in no form, nor `covered` (the words of b's answer)."""
    found = []
    for word in _WORD.findall(_QUOTE.sub(" ", a.focus)):
        term = next(iter(terms_of(word)), None)
        if term and term in a.terms and term not in b.terms | covered and not _near(term, b.terms | covered):
            found.append(word)
    return found


def swapped(phrasing: Reading, theirs: list[str], ours: list[str]) -> str:
    """The phrasing's focus with its own distinguishing words replaced by the question's."""
    words, placed = [], False
    for word in _WORD.findall(_QUOTE.sub(" ", phrasing.focus)):
        if word in ours:
            if not placed:
                words.extend(theirs)
                placed = True
            continue
        words.append(word)
    return " ".join(words)


def _same_but_for(question: Reading, phrasing: Reading, theirs: list[str], ours: list[str]) -> bool:
    """The two are the same question but for a word or two each ("how much yeast…" / "how much salt…")."""
    swapped_terms = frozenset().union(*(terms_of(word) for word in [*theirs, *ours]))
    rest = question.terms - swapped_terms
    return bool(rest) and rest == phrasing.terms - swapped_terms


@dataclass(frozen=True, slots=True)
class Judgement:
    score: float  # the cosine, less the substitution penalty; compared with the threshold
    cosine: float
    refused: str | None = None  # why it can never fit: intent, numbers, substitution
    gain: float = 0.0  # what swapping the distinguishing words added to the similarity (0: none to swap)
    # Every word of the question that the phrasing lacks is one of its answer's words: no substitution penalty.
    leans: bool = False

    def at(self, penalty: float) -> float:
        """The score this pair would get with another substitution penalty (the calibration bench's grid)."""
        return self.cosine - (0.0 if self.leans else penalty) * max(0.0, self.gain)


def judge(
    question: Reading,
    question_vectors: np.ndarray,
    phrasing: Reading,
    phrasing_vectors: np.ndarray,
    embed: EmbedQuestions,
    *,
    penalty: float,
    floor: float = 0.0,
    covered: frozenset[str] = frozenset(),
) -> Judgement:
    """How well `question` fits `phrasing`. Vectors are (2, dimension): the text's, then the focus's. The swap is
    embedded only for a pair scoring at least `floor` (the threshold: below it the penalty changes nothing).
    `covered`: the words of the phrasing's answer (`answer_words`). When every word of the question that the
    phrasing lacks is among them ("starter" where the phrasing says "Bartholomew" and the answer calls him "my
    sourdough starter"), the swap costs no penalty; it is still refused when the swap alone makes the two the same
    question, since an answer may mention what it is not about ("add the salt after the yeast")."""
    by_focus = float(question_vectors[1] @ phrasing_vectors[1])
    cosine = max(by_focus, float(question_vectors[0] @ phrasing_vectors[0]))
    if not compatible(question.intent, phrasing.intent):
        return Judgement(cosine, cosine, "intent")
    if question.numbers and phrasing.numbers and question.numbers != phrasing.numbers:
        return Judgement(cosine, cosine, "numbers")
    if cosine < floor:
        return Judgement(cosine, cosine)
    theirs, ours = lonely(question, phrasing), lonely(phrasing, question)
    leans = bool(theirs) and not lonely(question, phrasing, covered)
    if not (theirs and ours):
        return Judgement(cosine, cosine, leans=leans)
    after = float(question_vectors[1] @ embed([swapped(phrasing, theirs, ours)])[0])
    gain = after - by_focus
    refused_at = _SWAP_REFUSED[max(len(theirs), len(ours)) - 1] if max(len(theirs), len(ours)) <= 2 else None
    if refused_at is not None and gain >= refused_at and _same_but_for(question, phrasing, theirs, ours):
        return Judgement(cosine, cosine, "substitution", gain, leans)
    verdict = Judgement(cosine, cosine, None, gain, leans)
    return replace(verdict, score=verdict.at(penalty))


def embed_readings(embed: EmbedQuestions, readings: Sequence[Reading]) -> np.ndarray:
    """Shape (len, 2, dimension): each reading's text and focus, embedded together."""
    if not readings:
        return np.zeros((0, 2, 0), dtype=np.float32)
    flat = embed([text for r in readings for text in (r.text, r.focus)])
    return np.asarray(flat, dtype=np.float32).reshape(len(readings), 2, -1)


@dataclass(frozen=True, slots=True)
class _Scope:
    """The phrasings of the answers a creator's questions may get, read and embedded under that creator."""

    owners: list[int]  # per phrasing: its answer's index in AnswerIndex.answers
    readings: list[Reading]
    vectors: np.ndarray  # (phrasings, 2, dimension)
    words: list[frozenset[str]]  # per phrasing: its answer's words (answer_words)


@dataclass(frozen=True, slots=True)
class _Asked:
    reading: Reading
    vectors: np.ndarray  # (2, dimension)
    cosines: np.ndarray  # per phrasing of the scope: the closer of text-to-text and focus-to-focus


@dataclass(frozen=True, slots=True)
class Fit:
    answer: CuratedView
    phrasing: str
    judgement: Judgement


class AnswerIndex:
    """The active answers' phrasings, read and embedded per creator they are asked under (the creator's name is
    left out of the focus, as a visitor's question is read)."""

    def __init__(self, answers: Sequence[CuratedView], embed: EmbedQuestions) -> None:
        self.answers = list(answers)
        self._embed = embed
        self._lock = threading.Lock()
        self._read: dict[str | None, _Scope] = {}  # per creator slug (None: asked of no creator)
        # Questions scored against a scope, the latest few: the turn's match and its follow-ups read one question
        # once (the match before the turn streams, the related answers after it).
        self._asked: OrderedDict[tuple[str, str | None], _Asked] = OrderedDict()

    def __len__(self) -> int:
        return len(self.answers)

    def _scope(self, creator: Creator | None) -> _Scope:
        """A creator's question is answered by that creator's answers and by answers for all; a question asked
        without a creator only by answers for all."""
        key = creator.slug if creator else None
        with self._lock:
            found = self._read.get(key)
            if found is None:
                owners, readings, words = [], [], []
                for at, answer in enumerate(self.answers):
                    if answer.creator is None or (creator is not None and answer.creator == creator.slug):
                        covered = answer_words(answer, creator)
                        for phrasing in answer.questions:
                            owners.append(at)
                            readings.append(read(phrasing, creator))
                            words.append(covered)
                found = self._read[key] = _Scope(owners, readings, embed_readings(self._embed, readings), words)
        return found

    def warm(self, creators: Sequence[Creator | None]) -> None:
        for creator in creators:
            self._scope(creator)

    def _ask(self, question: str, creator: Creator | None, scope: _Scope) -> _Asked:
        """The question read, embedded and compared with every phrasing of its scope: once per question."""
        key = (question, creator.slug if creator else None)
        with self._lock:
            found = self._asked.get(key)
            if found is not None:
                self._asked.move_to_end(key)
                return found
        reading = read(question, creator)
        vectors = embed_readings(self._embed, [reading])[0]
        cosines = np.maximum(scope.vectors[:, 0, :] @ vectors[0], scope.vectors[:, 1, :] @ vectors[1])
        found = _Asked(reading, vectors, cosines)
        with self._lock:
            self._asked[key] = found
            if len(self._asked) > _ASKED_KEPT:
                self._asked.popitem(last=False)
        return found

    def best(self, question: str, creator: Creator | None, *, threshold: float, penalty: float) -> Fit | None:
        """The answer whose phrasing the question fits best, at `threshold` or above; CPU-bound (a thread)."""
        scope = self._scope(creator)
        if not scope.owners:
            return None
        asked = self._ask(question, creator, scope)
        cosines = asked.cosines
        best: Fit | None = None
        for at in np.argsort(-cosines):
            if cosines[at] < threshold or (best is not None and cosines[at] <= best.judgement.score):
                break
            owner = scope.owners[at]
            verdict = judge(
                asked.reading, asked.vectors, scope.readings[at], scope.vectors[at], self._embed, penalty=penalty,
                floor=threshold, covered=scope.words[at],
            )  # fmt: skip
            if verdict.refused is None and verdict.score >= threshold:
                if best is None or verdict.score > best.judgement.score:
                    best = Fit(self.answers[owner], scope.readings[at].text, verdict)
        return best

    def related(self, question: str, creator: Creator | None, *, exclude: str | None, below: float) -> list[str]:
        """The first phrasing of each other answer near the question (but not fitting it), nearest first."""
        scope = self._scope(creator)
        if not scope.owners:
            return []
        cosines = self._ask(question, creator, scope).cosines
        owners = scope.owners
        picked: dict[str, tuple[float, str]] = {}
        for at in np.argsort(-cosines):
            answer = self.answers[owners[at]]
            score = float(cosines[at])
            if score < _RELATED:
                break
            if answer.id == exclude or answer.id in picked or score >= below:
                continue
            picked[answer.id] = (score, answer.questions[0])
        return [text for _, text in sorted(picked.values(), key=lambda item: -item[0])]


class CuratedAnswers:
    """The curator's answers as the chat sees them (the protocol in backend/chat/tiers/curated.py)."""

    def __init__(
        self,
        sessions: Sessions,
        embed: EmbedQuestions,
        settings: CuratedSettings,
        *,
        creators: Callable[[str], Creator | None] = lambda slug: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._creators = creators  # a slug's creator (its name is left out of the focus), from the catalog
        self._embed = embed
        self._settings = settings
        self._clock = clock
        self._index = AnswerIndex([], embed)
        self._version: int | None = None
        self._checked = float("-inf")
        self._refreshing = anyio.Lock()
        # (creator, site) -> (version, when, questions, origin): starter questions, read at most once a minute
        self._starters: dict[tuple[str | None, str | None], tuple[int | None, float, list[str], str]] = {}

    @property
    def index(self) -> AnswerIndex:
        return self._index

    async def refresh(self, *, force: bool = False) -> None:
        """Re-read the answers when their version moved (or `force`); the database unavailable, keep the copy."""
        if self._refreshing.locked():
            return  # another turn is at it; this one uses the answers read so far
        async with self._refreshing:
            self._checked = self._clock()
            try:
                if not force and await answers_store.version(self._sessions) == self._version:
                    return
                version, answers = await answers_store.active_answers(self._sessions)
            except LorechatError as exc:
                log.warning("cannot read the curated answers, keeping the copy in memory: %s", exc.message)
                return
            index = AnswerIndex(answers, self._embed)
            # The phrasings embedded now, off the loop, before the new copy serves (no visitor waits for it).
            slugs = sorted({a.creator for a in answers if a.creator is not None})
            scopes = [None, *(self._creators(slug) or Creator(slug=slug, name=slug) for slug in slugs)]
            await anyio.to_thread.run_sync(index.warm, scopes)
            self._index, self._version = index, version

    async def _current(self) -> AnswerIndex:
        if self._clock() - self._checked >= self._settings.refresh_seconds:
            await self.refresh()
        return self._index

    async def match(self, question: str, *, creator: Creator | None) -> CuratedMatch | None:
        if not self._settings.enabled:
            return None
        index = await self._current()
        if not len(index):
            return None
        settings = self._settings
        find = partial(
            index.best, question, creator, threshold=settings.match_threshold, penalty=settings.substitution_penalty
        )
        fit = await anyio.to_thread.run_sync(find)
        if fit is None:
            return None
        # Read again by its key: retired (or edited) meanwhile on any replica, what is committed now decides.
        now = await answers_store.serving(self._sessions, answer_id=fit.answer.id)
        if now is None:
            self._checked = float("-inf")  # this copy is stale: the next turn re-reads it
            return None
        return CuratedMatch(
            answer_id=now.id,
            version=now.version,
            text=now.answer,
            documents=tuple(now.documents),
            score=round(fit.judgement.score, 4),
        )

    async def starters(self, *, creator: str | None, site: str | None) -> tuple[list[str], str]:
        """The questions the widget offers before the first one, and where they come from: the curator's set for
        this site and/or creator ("curator"), else the most asked questions answered well ("asked"). Kept for a
        minute per replica, and dropped at once when any curated write moved the version."""
        limit = self._settings.starters
        if limit <= 0:
            return [], "none"
        await self._current()
        key = (creator, site)
        kept = self._starters.get(key)
        if kept is not None and kept[0] == self._version and self._clock() - kept[1] < _STARTERS_SECONDS:
            return kept[2], kept[3]
        questions = await answers_store.curator_starters(self._sessions, creator=creator, site=site)
        origin = "curator"
        if not questions:
            questions = await answers_store.well_answered_questions(self._sessions, creator=creator, limit=limit)
            origin = "asked" if questions else "none"
        if len(self._starters) >= _STARTERS_KEPT:
            self._starters.clear()
        self._starters[key] = (self._version, self._clock(), questions[:limit], origin)
        return questions[:limit], origin

    async def served(self, match: CuratedMatch, *, message_id: str) -> None:
        await answers_store.record_use(
            self._sessions, message_id=message_id, answer_id=match.answer_id, version=match.version
        )

    async def related(self, question: str, *, creator: Creator | None, exclude: str | None, limit: int) -> list[str]:
        if not self._settings.enabled or limit <= 0:
            return []
        index = self._index
        if not len(index):
            return []
        find = partial(index.related, question, creator, exclude=exclude, below=self._settings.match_threshold)
        return (await anyio.to_thread.run_sync(find))[:limit]


def question_embedder(embed_query: Callable[[str], np.ndarray]) -> EmbedQuestions:
    """Questions embedded one by one as the search embeds them (the embedder remembers recent ones)."""

    def embed(texts: Sequence[str]) -> np.ndarray:
        return np.stack([np.asarray(embed_query(text), dtype=np.float32) for text in texts])

    return embed
