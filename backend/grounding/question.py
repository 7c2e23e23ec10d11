"""What a question asks: its focus (without boilerplate and the scoped creator's name), its weighted words, the kind
of fact it wants (a name, a number, steps, a reason, a definition), and its shapes: a compound or a comparison (its
parts), a follow-up leaning on the question before (elliptical), a question put to the creator ("your starter").

relevance.py scores source sentences against a question read here; coverage.py, the extractive tier, the prompt's
follow-up rule and the curated matcher read questions here too, so one question is read one way everywhere.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import partial

from backend.grounding.terms import content_terms, name_words, stem, text_terms
from backend.stages import Creator

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
    requirement = "requirement"  # what does it need, what do I have to: a condition, a prerequisite
    steps = "steps"  # how do I: instructions
    reason = "reason"  # why
    definition = "definition"  # what is
    general = "general"


_KINDS: list[tuple[FactKind, re.Pattern[str]]] = [
    (
        FactKind.name,
        re.compile(
            r"^where\b|\b(?:which|what)(?:'s| is| are)?(?: the| a)?(?: [\w-]+){0,2}? "
            r"(?:option|flag|switch|command|variable|setting|key|file|directory|format|argument|parameter|function|class|method|package|tool|program|field|"
            r"keyword|macro|header|environment variable|config(?:uration)? (?:variable|option|key)|"
            r"decorator|signal|attribute|property|exception|hook|module|helper|middleware|extension|endpoint)s?\b",
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
        FactKind.requirement,
        re.compile(
            r"\bwhat (?:does|do|must|should|would) .{0,60}?\b(?:need|require)"
            r"|\bwhat(?:'s| is| are) (?:needed|required)\b|\bprerequisites?\b|\bwhat do (?:i|you|we) (?:need|have) to\b"
            r"|\bwhat(?:'s| is) the (?:minimum|least) (?:i|you|we)\b",
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


@dataclass(frozen=True, slots=True)
class Question:
    text: str  # as asked
    focus: str  # without boilerplate and the creator's name: what gets embedded
    terms: dict[str, float]  # content terms -> weight (1 for the question, less for follow-up context)
    kind: FactKind
    units: frozenset[str]  # units a number question expects ("how hot" -> °C)
    # It asks what holds when nothing is said ("by default", "unless I say otherwise", "what is assumed").
    default: bool = False


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
    kind = _kind_of(question)
    asked = question
    if kind is FactKind.general and context and _PRO_FORM.search(question) and is_elliptical(question):
        # "And the one that takes the default answer?" after "Which options make dpkg keep ...?" asks for an option too:
        # "one" stands for what the question before asked for.
        kind, asked = _kind_of(context), context
    units: frozenset[str] = frozenset()
    if kind is FactKind.number:
        units = frozenset().union(*(u for pattern, u in _UNIT_HINTS if pattern.search(asked)))
    default = _ASKS_DEFAULT.search(question) is not None
    return Question(text=question, focus=focus, terms=terms, kind=kind, units=units, default=default)


# "one" standing for a noun of the question before ("the one that ...", "the default one?"), not a number ("one of
# several", "one-line", "one session").
_PRO_FORM = re.compile(
    r"(?<![\w-])ones?(?:\s*[?,.!]|\s*$|\s+(?:that|which|who|whose|with|without|for|in|on|from|to|you|i|we|they)\b)",
    re.IGNORECASE,
)


_ASKS_DEFAULT = re.compile(
    r"\bby default\b|\bunless (?:i|you|we|one) (?:say|tell|specify|give|pass|set)\b"
    r"|\bif (?:i|you|we) (?:don'?t|do not|never) (?:say|tell|specify|give|pass|set)\b|\bis assumed\b"
    r"|\bwhat(?:'s| is) the default\b|\bdefault (?:value|setting)\b|\bout of the box\b|\bunless I change\b",
    re.IGNORECASE,
)


def _kind_of(question: str) -> FactKind:
    return next((kind for kind, pattern in _KINDS if pattern.search(question)), FactKind.general)


# Compound questions: two questions joined ("what flour does she use, and how long does she ferment it?").
# An auxiliary opens a second question only with a subject after it ("..., and should I ...?"); without one it joins
# two verbs of the same question ("... cannot be tested and should be skipped?").
_JOINED = re.compile(
    r"\s*;\s*|,?\s+and\s+(?=(?:how|what|which|where|when|why|who|whose)\b|(?:is|are|does|do|did|can|should)\s+"
    r"(?:i|you|we|he|she|it|they|this|that|these|those|there|the|a|an|my|your|his|her|its|our|their)\b)"
    # After a comma, an auxiliary opens a question of its own whatever its subject ("..., and does capitalisation
    # matter?"); not one opening a verb's passive ("..., and should be skipped").
    r"|,\s+and\s+(?=(?:is|are|does|do|did|can|should)\s+(?!be\b|not\b|have\b)\w)",
    re.IGNORECASE,
)
# Two goals of one how-to question, the second a verb and what it acts on ("... and accept them in any letter case?"):
# an object pronoun or a determiner after the word past "and" makes that word a verb, unless that word is one of the
# same kind ("and all the files", "and not a revision").
_OBJECT = r"(?:them|it|him|her|me|us|the|a|an|my|your|its|our|their|those|these|this|that|each|every|all|both)"
_DOINGS = re.compile(
    r"^(?P<lead>(?:so |and |but )?how (?:do|can|could|should|would|might) (?:i|we|you|one) )"
    rf"(?P<first>(?:(?!\band\b).)+?)\s+and\s+(?P<second>(?!{_OBJECT}\b|not\b|also\b|then\b|some\b|any\b|other\b|only\b)"
    rf"[a-z]+\s+{_OBJECT}\b.*?)\s*[?.!]?$",
    re.IGNORECASE,
)
_DOING_TERMS = 2
# Comparisons: "the difference between A and B", "should I use A or B?".
_BETWEEN = re.compile(r"\bbetween\s+(?P<a>.+?)\s+and\s+(?P<b>.+?)\s*(?:[?.!]|$)", re.IGNORECASE)
_EITHER = re.compile(
    r"^(?P<pre>(?:which|should|would|is|do|does|can)\b.*?\b(?:use|choose|prefer|pick|run|better|is it)\s+)"
    r"(?P<a>[^,?;]{1,40}?)\s+or\s+(?P<b>[^,?;]{1,40}?)\s*(?:[?.!]|$)",
    re.IGNORECASE,
)
# "How is A different from B?", "What distinguishes A from B?", "How do A and B differ?": a comparison of A and B.
_DIFFERS = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"^(?:so |and |but )?(?:how|in what ways?)\s+(?:is|are|does|do)\s+(?P<a>.+?)\s+(?:different from"
        r"|differs? from|compared? (?:to|with))\s+(?P<b>.+?)\s*(?:[?.!]|$)",
        r"\bwhat (?:distinguishes|separates)\s+(?P<a>.+?)\s+from\s+(?P<b>.+?)\s*(?:[?.!]|$)",
        r"^(?:how|in what ways?)\s+(?:do|does|are)\s+(?P<a>.+?)\s+and\s+(?P<b>.+?)\s+(?:differ|compare)\b",
    )
)
_SECOND_PERSON = {"you": "I", "your": "my", "yours": "mine", "yourself": "myself", "you're": "I'm", "you've": "I've"}
_YOU = re.compile(r"\b(?:" + "|".join(map(re.escape, _SECOND_PERSON)) + r")\b", re.IGNORECASE)


_ELLIPTICAL = re.compile(r"^\s*(?:and|or|but|what about|how about|same for)\b", re.IGNORECASE)


def is_elliptical(question: str) -> bool:
    """A follow-up that leans on the question before for its meaning ("And for IPv6?", "What about the ignored
    ones?"): it opens with a conjunction, or says almost nothing of its own."""
    return _ELLIPTICAL.match(question) is not None or len(content_terms(question)) < 2


# Words that name one side of a pair: a follow-up saying one where the question before said the other ("And the one
# that runs after each request?" after "Which decorator runs a function before every request?") asks for the other
# side, and what answered the question before is now the wrong half.
_COUNTERPARTS = (
    "before after", "first last", "start end", "start stop", "begin end", "enable disable", "add remove",
    "minimum maximum", "min max", "upload download", "read write", "push pull", "open close", "input output",
    "server client", "import export", "encrypt decrypt", "lock unlock", "install uninstall", "install remove",
    "show hide", "increase decrease", "inbound outbound", "incoming outgoing", "lower upper", "lowest highest",
    "smallest largest", "allow deny", "accept reject", "send receive", "request response", "prefix suffix",
    "head tail", "top bottom", "left right", "sign verify", "compress decompress", "mount unmount", "attach detach",
    "subscribe unsubscribe", "login logout", "connect disconnect", "grant revoke", "include exclude", "older newer",
    "oldest newest", "ascending descending", "source destination", "local remote", "inner outer", "public private",
)  # fmt: skip
_PAIRS = tuple(tuple(stem(word) for word in pair.split()) for pair in _COUNTERPARTS)


def counterparts(question: str, before: str) -> list[tuple[str, str]]:
    """The (said before, asked now) word stems where a follow-up turns to the other side of a pair the question
    before named: the follow-up has one side and not the other, the question before the other side and not this."""
    if not before:
        return []
    now, then = text_terms(question), text_terms(before)
    turned = []
    for a, b in _PAIRS:
        for old, new in ((a, b), (b, a)):
            if new in now and old not in now and old in then and new not in then:
                turned.append((old, new))
    return turned


# A situation told before the question ("A session stuck behind a lock waits a little ... . How long is that wait by
# default, and which setting changes it?"): the sentences before the last.
_SITUATION = re.compile(r"^.*[.!]\s+(?=[A-Z])", re.DOTALL)


def question_parts(question: str) -> list[str]:
    """The questions a compound or comparing question holds, each to be answered with its own sentence; one
    part (the question) when it is neither. A situation told first belongs to no part (each is read with the whole
    question as its context)."""
    situation = _SITUATION.match(question)
    if situation is not None:
        parts = question_parts(question[situation.end() :])
        return parts if len(parts) > 1 else [question]
    between = _BETWEEN.search(question)
    if between:
        return _sides("", between["a"], between["b"])
    either = _EITHER.search(question)
    if either:
        return _sides(either["pre"], either["a"], either["b"])
    for pattern in _DIFFERS:
        differs = pattern.search(question)
        if differs:
            return _sides("", differs["a"], differs["b"])
    parts = [part.strip(" ,;") for part in _JOINED.split(question)]
    parts = [part for part in parts if content_terms(part)]
    if len(parts) == 1:
        parts = _two_doings(question)
    return parts if len(parts) > 1 else [question]


def _two_doings(question: str) -> list[str]:
    """A how-to question asking for two things to do ("How do I limit an option to a few allowed values and accept
    them in any letter case?"): each goal with the question's opening ("How do I accept them in any letter case?"),
    when both say enough of their own to be searched for."""
    joined = _DOINGS.match(question)
    if joined is None:
        return [question]
    lead = joined["lead"]
    goals = [joined["first"].rstrip(" ,"), joined["second"]]
    if any(len(content_terms(goal) - content_terms(lead)) < _DOING_TERMS for goal in goals):
        return [question]
    return [f"{lead}{goal}" for goal in goals]


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
