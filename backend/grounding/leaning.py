"""How a source sentence leans on its neighbours: what the extractive tier must quote with a pick so that it reads
right (relevance.py's `Candidate.leaning`), and what it may leave out.

A sentence opening with a pointing word ("That liquid is called hooch."), pointing a few words in ("If the script exits
with this code, ..."), opening with a connective ("Whereas ...", "Otherwise, ...") or with a thing the sentence before
introduced ("The script ...") leans on the one before. The sentence after a pick completes it when it denies the pick,
when it says how to do what the pick needs or warns of ("Instead, use ...", "... accomplish this.") for a question
asking how or which, for a question asking for a name, when it names in code the thing the pick is about, and when it
goes on from the pick to state what was asked ("However if a console is connected the stream will instead be emulated
..." then "In this case the stream will also use utf-16-le as internal encoding."). A cross-reference and nothing
else ("See githooks(5) for more information.") is a signpost: quoted with nothing.
"""

from __future__ import annotations

import re

from backend.grounding.code_lines import CODE_TOKEN
from backend.grounding.facts import quantities
from backend.grounding.question import FactKind, Question
from backend.grounding.quotable import Quotable
from backend.grounding.sentences import Span
from backend.grounding.terms import text_terms

# A cross-reference and nothing else ("See Section 9.1.1, “Recording ...”.", "See git-config(1)."): a pointer.
_POINTER = (
    r"^(?:see|refer to)\s+(?:also\s+)?(?:(?:section|chapter|table|figure|appendix)\s+[\dA-Z][\d.]*|[\w.-]+\(\d\w*\))"
    r"[^.;]*\.?$"
)
SIGNPOST = re.compile(
    r"^(?:here is|here's|so let me|let me tell|let's|lots of you asked|people ask|this is the|now,)|" + _POINTER,
    re.IGNORECASE,
)
CROSS_REFERENCE = re.compile(_POINTER, re.IGNORECASE)
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


# A pronoun early in a sentence ("You can check it using checkbashisms(1)."): it is about the sentence before's thing.
_REFERS_BACK = re.compile(r"^(?:\S+\s+){0,6}?(?:it|them|this|these|those)\b", re.IGNORECASE)


# A sentence denying the one before: "They are not — these two options mean very different things.", "This is not
# the case.", "That is wrong."
_DENIES = re.compile(
    r"^(?:they|it|this|that|these|those)\s+(?:is|are|was|were|does|do|did|has|have)(?:n't|\s+not\b|\s+never\b)"
    r"|^(?:this|that|it)\s+is\s+(?:wrong|false|incorrect|a myth|a misconception)\b",
    re.IGNORECASE,
)


# A sentence that says how to do what the one before it needs or warns of: "Instead, use the context's with_resource
# method ...", "The commands COMMIT AND CHAIN and ROLLBACK AND CHAIN accomplish this.", "To do so, run ...".
_RESOLVES = re.compile(
    r"^(?:instead\b|rather,"
    r"|to (?:do|achieve|accomplish|avoid|fix|solve|prevent|get around|work around) (?:this|that|so)\b"
    r"|for (?:this|that)(?: purpose)?,|this (?:can|is) (?:be )?(?:done|achieved|accomplished|solved)\b"
    r"|the (?:solution|fix|way to do (?:this|that)) is\b)"
    r"|^[^.!?]{0,80}\b(?:accomplish(?:es)?|achieves?|solves?|does|do) (?:this|that)\.$",
    re.IGNORECASE,
)
# The questions a resolution answers: how to do something, and which thing does it.
_ASKS_HOW = frozenset({FactKind.steps, FactKind.name, FactKind.general})


def completed_by(question: Question, read: Quotable, following: Span | None) -> Span | None:
    """The sentence after `read` when `read` alone would mislead or leave out what is asked: it denies `read`, it
    goes on from `read` to state what was asked, or (for a question asking for a name) `read` names nothing and it
    names the thing `read` is about ("Avoid writing a shell script with bashisms ..." then "You can check it using
    checkbashisms(1).")."""
    if following is None:
        return None
    if _DENIES.match(following.text):
        return following
    if question.kind in _ASKS_HOW and _RESOLVES.match(following.text) and _says_how(following.text):
        return following
    if _goes_on_to_state(question, read, following):
        return following
    if question.kind is not FactKind.name or not CODE_TOKEN.search(following.text):
        return None
    if CODE_TOKEN.search(read.whole):
        return None
    return following if _REFERS_BACK.match(following.text) or leans_on(following.text, read.span.text) else None


def _goes_on_to_state(question: Question, read: Quotable, following: Span) -> bool:
    """`following` leans on `read` ("In this case ...", "This option ...") and states a fact (code or a quantity) on
    a word the question asks and `read` does not have: the pick sets the scene, the next sentence says what was
    asked. Seven sets: one fact more (clickdocs), none lost, four answers a sentence longer."""
    if not leans_on(following.text, read.span.text):
        return False
    asked = {term for term, weight in question.terms.items() if weight >= 1.0}  # the question's own, not its context's
    if not (text_terms(following.text) & asked) - read.terms:
        return False
    return CODE_TOKEN.search(following.text) is not None or bool(quantities(following.text))


def _says_how(text: str) -> bool:
    """A resolution that names or tells the way, not only that there is one ("This can be done quite easily.")."""
    return len(text.split()) >= 8 or CODE_TOKEN.search(text) is not None


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


def unless_signpost(span: Span | None) -> Span | None:
    """A sentence quoted along with a pick, unless it only points elsewhere ("See githooks(5) for more
    information."): that says nothing."""
    return span if span is None or not SIGNPOST.search(span.text) else None
