"""Text made safe for storage (I4): no NUL characters, no lone surrogates; everything else kept (I5)."""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """Drop NUL (PostgreSQL refuses it in text) and lone surrogates (not encodable as UTF-8).

    A well-formed surrogate pair that arrived as two code points (JSON "\\ud83d\\ude00") is joined into
    the character it stands for rather than dropped.
    """
    if "\x00" in value:
        value = value.replace("\x00", "")
    # An ASCII string (most are; CPython knows without reading it) holds no surrogate: no scan.
    if not value.isascii() and _SURROGATE.search(value):
        value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "ignore")
    return value


def clean_json(value: Any) -> Any:
    """clean_text applied to every string (keys included) inside JSON-like data."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(key)): clean_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(item) for item in value]
    return value
