"""Whether the retrieved sources answer the question at all (the honest reply when they do not is chat/prompt.py's).

Retrieval always returns its k best chunks, even for a question the creator never wrote about. Confidence is
the relevance (relevance.py: meaning plus the question's own words) of the best source sentence; below
`THRESHOLD` every tier says the content does not cover this and names the closest topics it does cover (the
titles of what was retrieved), and the answer is stored `unanswered` for curators. A long question, its situation told
before what it asks, is held to a threshold a little lower.

A question asking how many or how much is not covered by sources that come close without stating any quantity: they
talk about the topic, not the figure.

Names are not paraphrased: a question that names something (an acronym, a product, a place, an option or a path:
"Git LFS", "WireGuard", "--force-with-lease") which none of the retrieved sources mentions asks about something
else than what they cover, however close its other words come. A name written as code that a source does mention
("-vvv", "entry_points") is the asked thing, found: that question is held to a lower threshold. A key combination is
one name in any spelling ("Ctrl-C" is "Control+C" and a terminal's "^C"), and names the question lists together
("on Windows, macOS and Linux") are alternatives: sources mentioning any of them cover the list.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from backend.grounding.code_lines import CODE_TOKEN
from backend.grounding.facts import quantities
from backend.grounding.question import as_asked_of, is_elliptical, read_question
from backend.grounding.relevance import best_sentences
from backend.grounding.sentences import SentenceVectors
from backend.grounding.terms import fold, name_words, stem
from backend.stages import Creator, Hit

# Chosen across the answer sets of demo, gitdocs, handbook and debref (leave-one-set-out, scripts/bench/quality.py):
# 0.38 refuses one more unanswerable turn on three sets and no answerable one; 0.40 refused an answerable demo
# turn. The figures are in BENCHMARKS.md ("Answer quality").
THRESHOLD = 0.38
_TOPICS = 3
# "How many developers voted ...?" asks for a count or an amount: when none of the closest sentences states any
# quantity, in figures or in words, the content talks about the topic but not the figure asked for, however close it
# comes (a name the question asks the amount of, found in passing: "What's the default size of shared_buffers ...?"
# over "(such as shared_buffers) is influenced by block_size", 0.53). Not "how often" or "how long", which are answered
# in words ("annually", "rarely") as often as in numbers. Seven sets: every answerable count question has a quantity
# among its 5 closest sentences, the close ones too; the unanswerable ones that got past the threshold have none.
_ASKS_A_COUNT = re.compile(r"\bhow (?:many|much)\b", re.IGNORECASE)
_COUNTED = 5
# An amount said in words, which facts.quantities (digits, number words) does not read: "Fold it twice.", "half the
# flour", "a pinch of salt", "a few seconds". One of these among the closest sentences is a figure too.
_AMOUNT_WORDS = re.compile(
    r"\b(?:twice|thrice|half|dozens?|several|unlimited"
    r"|a (?:few|couple|handful|pinch|quarter|third))\b",
    re.IGNORECASE,
)
# A question that tells its situation first ("I built an index but EXPLAIN keeps showing the whole table being read.
# For testing, how do I push the planner away from that kind of plan?") is further in meaning from any one source
# sentence than its question alone would be: past this many words, the threshold is lowered by _LONG_STEP a word, by
# _LONG_MOST at most. Six sets: pgdocs' false refusals 6 -> 3 of 49, no unanswerable question covered (the long ones
# name what the content lacks: PgBouncer, Patroni, Amazon RDS, and are refused by the names check).
_LONG_WORDS = 14
_LONG_STEP = 0.006
_LONG_MOST = 0.06
# A question naming something as code ("-vvv", "entry_points", "8.1") that the sources mention too is held to a
# threshold this much lower: the name is the asked thing, found, where its other words are plain ones the model reads
# far from the documentation's ("repeat a short flag like -vvv" against "use the repetition of options to count an
# integer up").
_CODE_FOUND = 0.1


@dataclass(frozen=True, slots=True)
class Coverage:
    confidence: float
    covered: bool
    topics: tuple[str, ...]  # the closest topics the content does cover (titles, best first)


def follow_up_context(question: str, search_query: str) -> str:
    """The earlier question(s) a follow-up was expanded with (prompt.search_query_for), or ""."""
    question = question.strip()
    if search_query == question or not search_query.endswith(question):
        return ""
    return search_query[: -len(question)].strip()


# A name in a question: two capitals in a word (LVM, WireGuard, IPv6), a capitalised word past the first, capitalised
# words joined by hyphens (Flask-Login, X-Forwarded-For: the whole is the name, its parts are other things), a word
# of letters and digits (Argon2, ext4, md5), or code.
_CAPITALS = re.compile(r"\b\w*[A-Z]\w*[A-Z]\w*\b")
_CAPITALISED = re.compile(r"(?<![.?!:;]\s)(?<=\s)[A-Z][a-z]+\b")
_HYPHENATED = re.compile(r"(?<![\w-])[A-Z]\w*(?:-[A-Z]\w*)+(?![\w-])")
_ALPHANUMERIC = re.compile(r"(?<![\w-])[A-Za-z]+\d[A-Za-z\d]*(?![\w-])")
# A key combination is one name ("Ctrl-C", "Alt+F4", "Ctrl-Shift-T"), whatever its separator or its modifier's
# spelling: a modifier as keyboards write it, then a key (not "control-flow" or "Command-Line", which are words).
_MODIFIERS = r"(?:Ctrl|CTRL|Control|Alt|ALT|Shift|SHIFT|Cmd|CMD|Command|Meta|Super|Option)"
_KEYS = re.compile(
    rf"\b{_MODIFIERS}(?:[-+]{_MODIFIERS})*[-+](?P<key>[A-Za-z0-9]|F\d{{1,2}}|Enter|Return|Tab|Esc|Escape|Space|Delete"
    r"|Del|Backspace|Home|End|Insert|PageUp|PageDown|Up|Down|Left|Right)\b"
)
# A modifier's spellings, folded: "Ctrl" is "Control", "Cmd" is "Command".
_MODIFIER_SPELLINGS = {
    word: f"(?:{'|'.join(group)})" for group in (("ctrl", "control"), ("cmd", "command")) for word in group
}
# What joins names listed together: a comma, "and", "or", "nor", a slash.
_LIST_SEPARATOR = re.compile(r"\s*(?:,|/|,?\s*(?:and|or|nor)\s+)\s*")
# Capitalised words that are not names (a question's own words, capitalised after a colon or in title case, and
# what people write in capitals: "Is it OK to ...?").
_NOT_NAMES = frozenset(
    "i i'm i've is it the a an and or but if my your our we you can how what why which where when who whose does do "
    "did should could would will are was were has have please also ok okay asap fyi btw imo imho".split()
)


def named(question: str, creator: Creator | None) -> list[str]:
    """The names a question asks about (not the scoped creator's own)."""
    own = name_words(creator)
    patterns = (_CAPITALS, _CAPITALISED, _HYPHENATED, _ALPHANUMERIC)
    keys = list(_KEYS.finditer(question))
    found = [m[0] for m in keys]
    found += [
        m[0]
        for pattern in patterns
        for m in pattern.finditer(question)
        if not any(key.start() <= m.start() < key.end() for key in keys)  # "Ctrl" of "Ctrl-C" is no name of its own
    ]
    found += [token for token in question.split() if CODE_TOKEN.search(token)]
    names: list[str] = []
    for name in found:
        word = name.strip(".,;:?!\"'`()[]")
        if "=" in word and not word.startswith(("/", "`")):
            # A setting with the asker's value ("--window=50", "?page=2"): the setting is the name, not the value.
            word = word.split("=", 1)[0].lstrip("?&")
        if len(word) < 2 or fold(word) in _NOT_NAMES or stem(word) in own or word in names:
            continue
        names.append(word)
    return names


def unmentioned(names: Sequence[str], hits: Sequence[Hit], *, question: str = "") -> list[str]:
    """The names no hit's text, title or heading mentions (folded; a plural or an "'s" matches its word; a key
    combination in any of its spellings). A name the question lists with others ("on Windows, macOS and Linux") is
    one of alternatives: mentioned when any of them is."""
    if not names:
        return []
    text = fold(" ".join(f"{hit.title}\n{hit.heading}\n{hit.text}" for hit in hits))
    missing = []
    for name in names:
        if not re.search(_spellings(name), text):
            missing.append(name)
    if question and missing:
        for group in _listed(question, names):
            if not group <= set(missing):
                missing = [name for name in missing if name not in group]
    return missing


def _spellings(name: str) -> str:
    """A pattern for a name as the folded sources may write it."""
    key = _KEYS.fullmatch(name)
    if key is not None:
        # "Ctrl-C" is "Ctrl+C", "Control-C", "CTRL C" and, in a terminal's notation, "^C".
        modifiers = [_MODIFIER_SPELLINGS.get(fold(m), re.escape(fold(m))) for m in re.split(r"[-+]", name)[:-1]]
        last = re.escape(fold(key["key"]))
        combo = r"[-+ ]?".join([*modifiers, last])
        caret = rf"|\^{last}" if modifiers == [_MODIFIER_SPELLINGS["ctrl"]] and len(last) == 1 else ""
        return rf"(?<![\w-])(?:{combo}{caret})(?!\w)"
    core = fold(name).removesuffix("'s").removesuffix("’s")
    core = core[:-1] if len(core) > 3 and core.endswith("s") else core
    return rf"(?<![\w-]){re.escape(core)}"


def _listed(question: str, names: Sequence[str]) -> list[set[str]]:
    """Groups of names the question lists together ("Windows, macOS and Linux", "GET or POST", "zsh/fish")."""
    spans = sorted(
        (m.start(), m.end(), name)
        for name in names
        for m in re.finditer(rf"(?<![\w-]){re.escape(name)}(?![\w-])", question)
    )
    groups: list[set[str]] = []
    for (_, end, name), (start, _, after) in itertools.pairwise(spans):
        if _LIST_SEPARATOR.fullmatch(question[end:start]):
            joined = next((g for g in groups if name in g), None)
            if joined is None:
                joined = {name}
                groups.append(joined)
            joined.add(after)
    return groups


def topics(hits: Sequence[Hit]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(hit.title for hit in hits if hit.title))[:_TOPICS]


def assess(
    question: str,
    *,
    search_query: str,
    hits: Sequence[Hit],
    creator: Creator | None,
    vectors: SentenceVectors,
    threshold: float = THRESHOLD,
) -> Coverage:
    """CPU-bound (embeds the question and unseen source sentences): call from a worker thread."""
    if not hits:
        return Coverage(0.0, False, ())
    context = follow_up_context(question, search_query)
    read = as_asked_of(read_question(question, creator=creator, context=context), creator)
    context_focus = read_question(context, creator=creator).focus if context else ""
    weight = 1.0 if context and is_elliptical(question) else 0.5
    best = best_sentences(read, hits, vectors, limit=_COUNTED, context_focus=context_focus, context_weight=weight)
    confidence = best[0][0] if best else 0.0
    threshold -= min(_LONG_MOST, _LONG_STEP * max(0, len(question.split()) - _LONG_WORDS))
    names = named(read.focus, creator)
    missing = unmentioned(names, hits, question=read.focus)
    if any(CODE_TOKEN.search(name) and name not in missing for name in names):
        threshold -= _CODE_FOUND
    covered = confidence >= threshold and not missing
    if covered and _ASKS_A_COUNT.search(read.focus):
        covered = any(quantities(text, with_one=True) or _AMOUNT_WORDS.search(text) for _, text in best)
    return Coverage(round(confidence, 4), covered, topics(hits))
