"""An answer's text as it streams, kept compact: pieces are joined every few dozen appends.

A streamed answer arrives a token or two at a time. Keeping every piece as its own str (about 50 bytes each,
plus a list slot, in both the tier's stream and the turn's outcome) made a 2,200-token answer hold ~150 KiB
while it streamed, most of a stream's memory at 1,000 streams (BENCHMARKS.md, "Memory per stream and collector pauses").
Joined, the same answer is one str of ~1 byte a character, kept once: by the tier's stream (the turn's outcome counts
how much of it was sent).
"""

from __future__ import annotations

_COMPACT_EVERY = 32


class TextBuffer:
    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[str] = []

    def append(self, text: str) -> None:
        self._parts.append(text)
        if len(self._parts) > _COMPACT_EVERY:
            self._parts = ["".join(self._parts)]

    def __bool__(self) -> bool:
        return any(self._parts)

    def __str__(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""
