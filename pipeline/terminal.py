"""Untrusted text made inert before a CLI prints it (C1).

What a command prints may come from content (titles, file names), visitors (gap questions), the database or
argv, and a terminal obeys what it is sent: a carriage return or backspace overwrites what came before, ESC
starts a control sequence (colours, cursor moves, window titles, hyperlinks), a bidi override (U+202E)
reorders the rest of the line, zero-width and other invisible format characters hide text, and a lone
surrogate (bad bytes in argv, decoded with `surrogateescape`) makes the write itself fail. `safe` replaces
each such character with a visible escape (`\\r`, `\\x1b`, `\\u202e`, `\\udcff`), so one field stays on one
line and reads as what it is; every other character, emoji, CJK, Arabic and Hebrew letters and combining marks
included, is kept. `dumps` is `json.dumps` whose output carries the same characters as JSON escapes: valid JSON,
equal in value once parsed. `markup` is `safe` for a rich console line (markup escaped too).
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from rich.markup import escape

# Format characters a script needs and a terminal cannot misuse: ZWNJ (Persian, Indic) and ZWJ (emoji sequences).
_KEPT = frozenset("\u200c\u200d")
# Letters that render as nothing, used to fake blank names (Hangul fillers, Khmer inherent vowels).
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u17b4\u17b5")
# Everything outside printable ASCII is looked at; a subdivision flag (black flag, tag letters, cancel tag) is the
# one use of the otherwise invisible tag characters that is kept whole.
_CANDIDATE = re.compile("(\U0001f3f4[\U000e0030-\U000e0039\U000e0061-\U000e007a]{1,16}\U000e007f)|[^\x20-\x7e]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def unsafe(char: str) -> bool:
    """Whether one character must not reach a terminal as it is."""
    category = unicodedata.category(char)
    if category in ("Cc", "Cs", "Zl", "Zp"):  # C0, DEL, C1; lone surrogates; U+2028, U+2029
        return True
    if category == "Cf":  # bidi controls and marks, zero-width space, word joiner, BOM, soft hyphen, tags...
        return char not in _KEPT
    return char in _INVISIBLE


def _text_escape(char: str) -> str:
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _sub(text: str, escape_char: Any) -> str:
    def replace(match: re.Match[str]) -> str:
        char = match.group()
        if match.group(1) is None and unsafe(char):
            return str(escape_char(char))
        return char

    return _CANDIDATE.sub(replace, text)


def safe(text: object) -> str:
    """`text` (anything, through `str`) with every character a terminal would act on shown as an escape."""
    return _sub(text if isinstance(text, str) else str(text), _text_escape)


def markup(text: object) -> str:
    """`safe(text)` for a rich console: its `[...]` cannot open a style either."""
    return escape(safe(text))


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps(value, ensure_ascii=False)` with control, bidi, invisible and surrogate characters written as
    `\\uXXXX`: readable non-ASCII text, nothing a terminal acts on, and `json.loads` gives `value` back."""
    # Outside strings JSON is ASCII, and json.dumps never leaves one of these raw after a backslash: each raw one
    # sits inside a string, where its escape means the same character.
    return _sub(json.dumps(value, ensure_ascii=False, **kwargs), _json_escape)
