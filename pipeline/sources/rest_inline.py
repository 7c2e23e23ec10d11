"""reStructuredText inline markup: a paragraph's text as a rendered page shows it (rest.py reads the blocks).

Roles show their text (``:func:`~flask.Flask.run``` reads "run", ``:ref:`the guide <target>``` "the guide"),
literals, emphasis and hyperlink references lose their marks and keep their words, footnote marks go, `|name|`
substitutions are replaced by what the page defines (an image substitution by nothing, an undefined one by its name).
What is inside a literal stays as written.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r"(?<![\w`]):(?:[A-Za-z][\w:+.-]*):`((?:[^`\\]|\\.)+)`|`((?:[^`\\]|\\.)+)`:(?:[A-Za-z][\w:+.-]*):")
_LITERAL = re.compile(r"``(.+?)``(?!`)")
_REFERENCE = re.compile(r"`((?:[^`\\]|\\.)+)`__?(?![\w])")
_INTERPRETED = re.compile(r"(?<![\w`])`((?:[^`\\]|\\.)+)`(?![\w`])")
_SIMPLE_REF = re.compile(r"\b([A-Za-z0-9][\w.+-]*?)__?(?=[\s,.;:!?)\]'\"]|$)")
_STRONG = re.compile(r"(?<![\w*])\*\*(?=\S)(.+?)(?<=\S)\*\*(?![\w*])")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])")
_FOOTNOTE_REF = re.compile(r"\s?\[(?:\d+|#[\w-]*|\*|[A-Za-z][\w.-]*)\]_")
_SUBSTITUTION = re.compile(r"(?<![\w|])\|([^|\s](?:[^|]*[^|\s])?)\|(?:__?)?(?![\w|])")
_EMBEDDED_TARGET = re.compile(r"^(.*?)\s*<([^<>]+)>$", re.DOTALL)
_ESCAPE = re.compile(r"\\(.)")


def inline_text(text: str, substitutions: dict[str, str] | None = None) -> str:
    """A paragraph's text without its inline markup, as a rendered page shows it."""
    literals: list[str] = []

    def keep(value: str) -> str:
        literals.append(value)
        return f"\x00{len(literals) - 1}\x00"

    text = _LITERAL.sub(lambda m: keep(m.group(1)), text)
    text = _ROLE.sub(lambda m: keep(_role_text(m.group(1) or m.group(2))), text)
    text = _REFERENCE.sub(lambda m: _reference_text(m.group(1)), text)
    text = _INTERPRETED.sub(lambda m: keep(_role_text(m.group(1))), text)
    text = _ESCAPE.sub(lambda m: keep(m.group(1)), text)  # an escaped "*" is a star, not emphasis
    text = _FOOTNOTE_REF.sub("", text)
    # A substitution shows its replacement text; an image substitution shows nothing; one this file does not define
    # (a project-wide |version|) shows its name.
    text = _SUBSTITUTION.sub(lambda m: (substitutions or {}).get(m.group(1), m.group(1)), text)
    text = _STRONG.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\1", text)
    text = _SIMPLE_REF.sub(r"\1", text)
    return re.sub(r"\x00(\d+)\x00", lambda m: literals[int(m.group(1))], text)


def _role_text(value: str) -> str:
    """`title <target>` shows its title; `~a.b.c` shows `c`; `!name` shows `name`."""
    value = _ESCAPE.sub(r"\1", value)
    embedded = _EMBEDDED_TARGET.match(value)
    if embedded and embedded.group(1):
        return embedded.group(1)
    if embedded:
        value = embedded.group(2)
    value = value.lstrip("!")
    if value.startswith("~"):
        return value[1:].rsplit(".", 1)[-1]
    return value


def _reference_text(value: str) -> str:
    embedded = _EMBEDDED_TARGET.match(_ESCAPE.sub(r"\1", value))
    if embedded and embedded.group(1):
        return embedded.group(1)
    return embedded.group(2) if embedded else value
