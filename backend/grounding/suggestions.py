"""Follow-up questions the sources can answer and the visitor has not asked, from the headings and titles of the
turn's retrieved documents (no model), or proposed by the model tier that answered (`proposed`): each one is
checked against the sources as the coverage check checks a question (coverage.py), so asking it never ends in "the
content does not cover this"."""

from __future__ import annotations

import re
from collections.abc import Sequence

from backend.grounding.coverage import THRESHOLD, assess
from backend.grounding.sentences import SentenceVectors
from backend.grounding.terms import content_terms, name_words
from backend.stages import Creator, Hit

# Over the coverage threshold by this much: the follow-up's own search may bring slightly different chunks.
MARGIN = 0.05
LABEL_CHARS = 90
# A proposed question longer than this is not a button a visitor would click.
QUESTION_CHARS = 160
# At most this many candidates are checked per turn (each embeds one question: ~2 ms).
_CHECKED = 8
_GENERIC = frozenset(
    "introduction intro overview summary conclusion conclusions notes note contents background references faq faqs "
    "about appendix preface foreword acknowledgements index transcript chapter part section misc miscellaneous".split()
)
_TITLES = frozenset({"dr", "dr.", "chef", "prof", "prof.", "mr", "mrs", "ms", "mr.", "mrs.", "ms."})
_SPACE = re.compile(r"\s+")


def short_name(creator: Creator) -> str:
    """How a visitor names the creator in a question: the first name, without a title ("Dr. Inês Calloway" → Inês)."""
    words = [word for word in creator.name.split() if word.lower() not in _TITLES]
    return words[0] if words else creator.name


def question_for(label: str, creator: Creator | None) -> str:
    """A heading or title as a question a visitor would click."""
    label = _SPACE.sub(" ", label).strip().strip('“”"')
    if label.endswith("?"):
        return label
    whose = f"does {short_name(creator)} say" if creator is not None else "do the sources say"
    return f"What {whose} about “{label}”?"


def answerable(question: str, sources: Sequence[Hit], creator: Creator | None, vectors: SentenceVectors) -> bool:
    """Do `sources` answer `question`, with the margin (the check every follow-up passes)? Embeds the question."""
    check = assess(question, search_query=question, hits=sources, creator=creator, vectors=vectors)
    return check.confidence >= THRESHOLD + MARGIN


def _asked_terms(asked: Sequence[str], names: frozenset[str]) -> set[str]:
    return set().union(*(content_terms(text, drop=names) for text in asked)) if asked else set()


def proposed(
    questions: Sequence[str],
    hits: Sequence[Hit],
    *,
    asked: Sequence[str],
    creator: Creator | None,
    vectors: SentenceVectors,
    limit: int,
) -> list[str]:
    """Up to `limit` of the questions a model proposed, in its order: each one the turn's sources answer, that asks
    about something the visitor has not (a word of its own beyond their questions'). CPU-bound: a worker thread."""
    if limit <= 0 or not hits:
        return []
    names = name_words(creator)
    seen_terms = _asked_terms(asked, names)
    seen = {text.casefold() for text in asked}
    found: list[str] = []
    for question in list(dict.fromkeys(questions))[:_CHECKED]:
        if len(found) >= limit:
            break
        terms = content_terms(question, drop=names)
        if len(question) > QUESTION_CHARS or question.casefold() in seen or not terms or terms <= seen_terms:
            continue
        if answerable(question, hits, creator, vectors):
            found.append(question)
    return found


def _labels(hit: Hit) -> list[str]:
    """The hit's most specific heading, then its document's title."""
    heading = hit.heading.rsplit(">", 1)[-1].strip() if hit.heading else ""
    return [label for label in (heading, hit.title.strip()) if label]


def follow_ups(
    hits: Sequence[Hit],
    *,
    asked: Sequence[str],
    quoted: set[int],
    creator: Creator | None,
    vectors: SentenceVectors,
    limit: int,
) -> list[str]:
    """Up to `limit` questions, best-ranked sources first. `quoted`: the 1-based numbers of the sources the answer
    quoted (their sections are what the answer already said); `asked`: the visitor's questions so far. CPU-bound
    (embeds each candidate): call from a worker thread."""
    if limit <= 0 or not hits:
        return []
    names = name_words(creator)
    seen_terms = _asked_terms(asked, names)
    quoted_documents = {hits[n - 1].document_id for n in quoted if 1 <= n <= len(hits)}
    candidates: dict[str, tuple[str, list[Hit]]] = {}  # label, folded -> (as written, the chunks under it)
    for number, hit in enumerate(hits, start=1):
        for label in _labels(hit):
            is_title = label == hit.title.strip()
            said = hit.document_id in quoted_documents if is_title else number in quoted
            terms = content_terms(label, drop=names)
            if said or not terms or len(label) > LABEL_CHARS or terms <= _GENERIC or terms <= seen_terms:
                continue
            # Every retrieved chunk under this heading (or of this document) is what answers it.
            under = [o for o in hits if o.document_id == hit.document_id and (is_title or o.heading == hit.heading)]
            candidates.setdefault(label.casefold(), (label, under))
    found: list[str] = []
    for label, sources in list(candidates.values())[:_CHECKED]:
        if len(found) >= limit:
            break
        question = question_for(label, creator)
        if answerable(question, sources, creator, vectors):
            found.append(question)
    return found
