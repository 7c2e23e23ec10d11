"""What a source sentence's form says beyond its meaning and words: the kind of fact it states (a quantity, code, a
step, a reason, a definition, a default) against the kind the question asks for, a table row that is the lookup
asked, and signposts and fragments that say little alone. relevance.py adds these to a sentence's relevance for the
extractive tier's order (`rank`); coverage's confidence reads relevance alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from backend.grounding.code_lines import CODE_TOKEN
from backend.grounding.facts import quantities
from backend.grounding.leaning import SIGNPOST
from backend.grounding.question import FactKind, Question
from backend.grounding.quotable import Quotable

_KIND_BONUS = 0.08
_UNIT_BONUS = 0.04
_FORM_PENALTY = 0.1

# A sentence that orders what is done (a step). Not its opening verb: a list of them, written for the demo's recipes,
# never fired (the text it was matched against began with a space) and, fired, moved no fact on the five sets.
_STEP_WORDS = re.compile(r"\b(?:then|until|every|after|before|feeds?)\b", re.IGNORECASE)
_REASON_WORDS = re.compile(r"\b(?:because|so that|which means|that is why|this is why|the result|so a|since)\b", re.I)
_REQUIREMENT_WORDS = re.compile(
    r"\b(?:requires?|required|needs? to|must(?! not)|has to|have to|prerequisites?|is needed|are needed"
    r"|only (?:allowed|possible|works?|supported|available|valid) (?:if|when|with))\b",
    re.IGNORECASE,
)
_DEFINITION_WORDS = re.compile(r"\b(?:is|are|means|called|named)\b", re.I)


def kind_bonus(question: Question, text: str) -> float:
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
    if question.kind is FactKind.requirement:
        return _KIND_BONUS if _REQUIREMENT_WORDS.search(text) else 0.0
    if question.kind is FactKind.reason:
        return _KIND_BONUS if _REASON_WORDS.search(text) else 0.0
    if question.kind is FactKind.definition:
        return _KIND_BONUS / 2 if _DEFINITION_WORDS.search(text) else 0.0
    return 0.0


def row_bonus(read: Quotable, asked: Iterable[str]) -> float:
    """A table row whose first cell names what the question asks about, under a column the question asks for
    ("What end-of-line code do DOS and Windows use?": the "MSDOS and Windows" row of the "EOL code" table) is the
    lookup the question is; terse, its meaning alone reads it low."""
    if not read.row_key or read.row_key.isdisjoint(asked) or read.columns.isdisjoint(asked):
        return 0.0
    return _KIND_BONUS


# A short sentence that names a literal carries its fact: 'Alternately, you can type "exit".', "Use `git stash -u`."
_NAMES_A_LITERAL = re.compile(rf"{CODE_TOKEN.pattern}|\"[^\"\s]{{1,40}}\"|“[^”\s]{{1,40}}”")


# A sentence saying what holds when nothing is said (a reference entry's "Default: False" line among them): for a
# question asking for a default.
_STATES_DEFAULT = re.compile(
    r"\bby default\b|\bdefaults? (?:to|is|value)\b|\bthe default\b|\bis assumed\b"
    r"|\bif (?:omitted|not (?:given|specified|set))\b|\bDefault(?: value)?: \S",
    re.IGNORECASE,
)


def form_penalty(text: str) -> float:
    """Signposts ("Here is how I...") and short fragments without a fact (a figure, a literal, a default) say little on
    their own."""
    penalty = 2.5 * _FORM_PENALTY if SIGNPOST.search(text) else 0.0
    short = len(text.split()) < 6 and not quantities(text, with_one=True)
    if short and not _NAMES_A_LITERAL.search(text) and not _STATES_DEFAULT.search(text):  # "Default: False" is a fact
        penalty += _FORM_PENALTY
    return penalty
