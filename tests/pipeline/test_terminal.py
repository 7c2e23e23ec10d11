"""C1: untrusted text is printed inert by every CLI listing (pipeline/terminal.py): control, bidi, invisible and
surrogate characters become visible escapes; real text (emoji, CJK, RTL letters, combining marks) is kept; JSON
output stays valid and equal in value."""

from __future__ import annotations

import json
import sys
import unicodedata

import pytest

from pipeline.terminal import dumps, markup, safe, unsafe

# Every character a terminal could act on, once: the whole code space, read from the Unicode database.
EVERY_CHAR = "".join(chr(code) for code in range(sys.maxunicode + 1))
ACTIVE = {"Cc", "Cs", "Zl", "Zp", "Cf"}
KEPT_FORMAT = {"\u200c", "\u200d"}  # ZWNJ, ZWJ

HOSTILE = [
    ("\r", "\\r"),  # return: rewrites the line
    ("\n", "\\n"),  # one record per line
    ("\t", "\\t"),
    ("\x1b[2J", "\\x1b[2J"),  # ESC: clear screen
    ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),  # window title, BEL
    ("\x08", "\\x08"),  # backspace
    ("\x00", "\\x00"),
    ("\x7f", "\\x7f"),
    ("\x9b31m", "\\x9b31m"),  # C1 CSI
    ("\x85", "\\x85"),  # C1 next line
    ("\u202e", "\\u202e"),  # right-to-left override
    ("\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d"),
    ("\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),  # isolates
    ("\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"),  # marks
    ("\u200b\u2060\ufeff\u00ad", "\\u200b\\u2060\\ufeff\\xad"),  # zero-width space, word joiner, BOM, soft hyphen
    ("\u2028\u2029", "\\u2028\\u2029"),  # line and paragraph separators
    ("\udcff\udcfe", "\\udcff\\udcfe"),  # bad argv bytes under surrogateescape
    ("\ud83d", "\\ud83d"),  # half a pair
    ("\U000e0041\U000e0042", "\\U000e0041\\U000e0042"),  # tag letters alone: invisible text
    ("\u3164", "\\u3164"),  # Hangul filler: a blank-looking "name"
]


@pytest.mark.parametrize(("text", "shown"), HOSTILE)
def test_c1_control_bidi_invisible_and_surrogates_are_escaped(text: str, shown: str) -> None:
    out = safe(f"a{text}b")
    assert out == f"a{shown}b"
    assert out.isprintable() and out.encode("utf-8")  # nothing a terminal acts on; encodable (no surrogate)


def test_c1_no_active_character_survives_anywhere_in_the_code_space() -> None:
    """The kind, not a list: over every code point, what `safe` leaves has no control, format (but ZWJ and ZWNJ),
    separator or surrogate character, and every escaped one is exactly what `unsafe` says."""
    out = safe(EVERY_CHAR)
    left = {char for char in set(out) if unicodedata.category(char) in ACTIVE}
    assert left <= KEPT_FORMAT
    assert "\x1b" not in out and out.encode("utf-8")
    escaped = [char for char in EVERY_CHAR if unsafe(char)]
    assert {unicodedata.category(char) for char in escaped} <= ACTIVE | {"Lo", "Mn"}  # + fillers
    assert len(escaped) > 2048 + 65  # every surrogate and control character at least


@pytest.mark.parametrize(
    "text",
    [
        "How do I fold croissant dough?",
        "Ça déjà vu — “quotes” … naïve",
        "e\u0301 a\u0308 Z\u0335\u0321a\u0336lgo",  # combining marks
        "面包怎么发酵？ パンの発酵 빵 발효",
        "كيف أخبز الخبز؟ איך אופים לחם?",  # Arabic and Hebrew letters themselves are fine
        "میخواهم\u200cنان بپزم",  # Persian ZWNJ
        "क्\u200dष",  # Devanagari ZWJ
        "🍞👍🏽 👨\u200d👩\u200d👧 ❤\ufe0f 🇫🇷 \U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
        "C:\\path\\to [bold]not markup[/]",
    ],
)
def test_c1_real_text_is_kept(text: str) -> None:
    assert safe(text) == text


def test_c1_markup_cannot_open_a_style() -> None:
    from rich.console import Console

    console = Console(record=True, width=200, highlight=False)
    hostile = "[/bold][red]x[/red] \x1b[31m"
    console.print(f"[bold]{markup(hostile)}[/]")
    assert console.export_text().rstrip("\n") == "[/bold][red]x[/red] \\x1b[31m"


def test_c1_json_output_is_inert_valid_and_equal_in_value() -> None:
    value = {
        "label": "\x1b[2J\rWhy\u202e is\u2028 my dough flat?\x7f\x9b",
        "argv": "\udcff\udcfe-id",
        "tags": "\U000e0041 smuggled",
        "kept": "🍞 面包 خبز e\u0301 👨\u200d👩\u200d👧",
        "nested": [{"title": "a\u2066b\u2069", "n": 3, "none": None}],
        "every": EVERY_CHAR[:0x3000],
    }
    text = dumps(value)
    assert json.loads(text) == value
    assert not any(unsafe(char) for char in text)
    assert "🍞 面包 خبز" in text  # readable, not \\u-escaped
    assert "\\u202e" in text and "\\udcff" in text and "\\udb40\\udc41" in text
    assert json.loads(dumps("\U000e0041")) == "\U000e0041"
