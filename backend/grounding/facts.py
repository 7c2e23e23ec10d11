"""The checkable facts in a sentence: quantities (number + unit, digits or words) and names.

"sixty-eight percent", "68 %" and "68%" are the same fact; "24°C", "24 C" and "twenty-four degrees" too. The
claim check compares these exactly (an answer's number that no cited source states is never supported) and
the extractive tier prefers sentences that carry the kind of fact a question asks for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_SMALL = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen".split()
    )
}
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i > 1}
_SCALES = {"hundred": 100, "thousand": 1000}
_NUMBER_WORD = "|".join([*_SMALL, *_TENS, *_SCALES])

# Units as a canonical label; the alternatives are matched right after a number.
_UNITS: dict[str, str] = {
    r"%|per\s?cent|percent": "%",
    r"°\s?c|°|degrees?(?:\s+celsius)?|c\b": "°C",
    r"kg|kilos?|kilograms?": "kg",
    r"g|grams?|gram\b": "g",
    r"hours?|hrs?|h\b": "h",
    r"minutes?|mins?": "min",
    r"seconds?|secs?": "s",
    r"days?": "day",
    r"weeks?": "week",
}
_UNIT = re.compile(r"\s*(?:-\s*)?(" + "|".join(f"(?:{alt})" for alt in _UNITS) + r")", re.IGNORECASE)
_UNIT_PATTERNS = [(re.compile(rf"^(?:{alt})$", re.IGNORECASE), label) for alt, label in _UNITS.items()]

_DIGITS = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)?)(?![\d])")
_WORDS = re.compile(
    rf"\b(?:{_NUMBER_WORD})(?:(?:[\s-]+|\s+and\s+)(?:{_NUMBER_WORD}))*(?:\s+point\s+(?:{_NUMBER_WORD}))?"
    r"(?:\s+and\s+a\s+half)?\b",
    re.IGNORECASE,
)
_CITATION = re.compile(r"\[\d+(?:\s*[,;]\s*\d+)*\]")
# Inline code, whose brackets are its own ("`sys.argv[1]`", "`parts[0].strip()`"), never a citation.
INLINE_CODE = re.compile(r"``.+?``|`[^`\n]*`")
_CITATION_OUTSIDE_CODE = re.compile(rf"({INLINE_CODE.pattern})|{_CITATION.pattern}")
_LIST_MARK = re.compile(r"^\s*\d+[.)]\s+", re.MULTILINE)
_NAME = re.compile(r"(?<![.!?:]\s)(?<!^)\b([A-Z][a-zà-ÿ]+(?:[A-Z][a-z]+)*)\b")
# Capitalised words that are not names (sentence openers after a colon or quote, titles, days...).
_NOT_NAMES = frozenset(
    "I Is It The A An And But So Then When If In On At For To Of My Your Our Their Her His Its This That These "
    "Those Yes No Not Dr Chef Mr Mrs Ms Celsius Fahrenheit Monday Tuesday Wednesday Thursday Friday Saturday "
    "Sunday Here There What Why How Who Which Where Also Both Each Every Once After Before".split()
)


@dataclass(frozen=True, slots=True)
class Quantity:
    value: float
    unit: str | None  # canonical label ("%", "°C", "g", "kg", "h", "min"...) or None


def _unit_label(raw: str) -> str:
    raw = " ".join(raw.split())
    for pattern, label in _UNIT_PATTERNS:
        if pattern.match(raw):
            return label
    return raw.lower()


def _word_value(phrase: str) -> float | None:
    words = [w for w in re.split(r"[\s-]+", phrase.lower()) if w and w != "and"]
    half = 0.0
    if words[-2:] == ["a", "half"]:
        half, words = 0.5, words[:-2]
    decimals: list[str] = []
    if "point" in words:
        at = words.index("point")
        decimals = [str(_SMALL.get(w, 0)) for w in words[at + 1 :]]
        words = words[:at]
    total = current = 0
    for word in words:
        if word in _SMALL:
            current += _SMALL[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word in _SCALES:
            current = max(current, 1) * _SCALES[word]
            if word == "thousand":
                total, current = total + current, 0
        else:
            return None
    value = float(total + current)
    if decimals:
        value += float("0." + "".join(decimals))
    return value + half


def without_citations(text: str) -> str:
    """A text without its [n] markers; brackets inside inline code ("`sys.argv[1]`") are the code's own and stay."""
    return _CITATION_OUTSIDE_CODE.sub(lambda m: m[1] or "", text)


def clean_claim_text(text: str) -> str:
    """A sentence without its [n] markers or list numbering: what is claimed, not where it is cited."""
    return _LIST_MARK.sub("", without_citations(text))


def quantities(text: str, *, with_one: bool = False) -> list[Quantity]:
    return list(_quantities(text, with_one))


@lru_cache(maxsize=20_000)
def _quantities(text: str, with_one: bool) -> tuple[Quantity, ...]:
    """Every number in `text` with the unit that follows it (if any); "1:5:2.5" gives 1, 5 and 2.5. The word
    "one" counts only `with_one` (in a source, where "one part starter" backs an answer's "1:2:2")."""
    text = clean_claim_text(text)
    found: list[Quantity] = []
    for match in _DIGITS.finditer(text):
        value = float(match[1].replace(",", "."))
        unit = _UNIT.match(text, match.end())
        found.append(Quantity(value, _unit_label(unit[1]) if unit else None))
    for match in _WORDS.finditer(text):
        if match[0].lower() == "one" and not with_one:  # "one of them": too common to be a claimed fact
            continue
        spelled = _word_value(match[0])
        if spelled is None:
            continue
        unit = _UNIT.match(text, match.end())
        found.append(Quantity(spelled, _unit_label(unit[1]) if unit else None))
    return tuple(found)


def is_number_word(term: str) -> bool:
    """A digit string or a spelled number ("twenty", "2.5"): the exact check owns these, not word overlap."""
    return term.replace(".", "").isdigit() or term in _SMALL or term in _TENS or term in _SCALES


def names(text: str) -> set[str]:
    """Capitalised words inside a sentence (not its first word): people, places, named techniques."""
    found = set()
    for sentence in re.split(r"(?<=[.!?:])\s+", clean_claim_text(text)):
        for match in _NAME.finditer(sentence.strip()):
            word = match[1]
            if match.start() > 0 and word not in _NOT_NAMES:
                found.add(word.lower())
    return found


def quantity_stated(claimed: Quantity, stated: list[Quantity]) -> bool:
    """The same value, with the same unit where both sides name one."""
    return any(
        abs(claimed.value - other.value) < 1e-9
        and (claimed.unit is None or other.unit is None or claimed.unit == other.unit)
        for other in stated
    )


def has_quantity(text: str) -> bool:
    return bool(quantities(text))
