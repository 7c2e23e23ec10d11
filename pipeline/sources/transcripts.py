"""Talk transcripts (.srt, .vtt): one `cue` block per cue, with its start and end kept in seconds.

`srt_cues` and `vtt_cues` read transcript text from anywhere (a file here, a podcast's or a video's captions in
pipeline/channels); `parse_srt` and `parse_vtt` are the file parsers around them."""

from __future__ import annotations

import html
import re

from backend.stages import Block, Document
from pipeline.sources.common import (
    ParseError,
    ParseResult,
    SourceContext,
    collapse,
    read_text,
    title_from_name,
)

# hh:mm:ss.mmm or mm:ss.mmm; SRT writes a comma before the milliseconds, VTT a dot. Both are accepted.
_TIME = r"(?:(\d{1,3}):)?([0-5]\d):([0-5]\d)[.,](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s+.*)?$")
_TAG = re.compile(r"<[^>]*>")  # <v Speaker>, <c.yellow>, <i>, <00:01:02.000>, </c>
_SSA = re.compile(r"\{\\[^}]*\}")  # {\an8} positioning codes some SRT tools write
_LOOKS_TIMED = re.compile(r"^\s*\d{1,3}:\d")
_VTT_SKIP = ("NOTE", "STYLE", "REGION")


def parse_srt(ctx: SourceContext) -> ParseResult:
    text = read_text(ctx)
    try:
        cues = srt_cues(text)
    except ParseError as exc:
        raise ctx.error(exc.reason) from None
    return _result(ctx, cues, title=None)


def parse_vtt(ctx: SourceContext) -> ParseResult:
    text = read_text(ctx)
    try:
        cues, title = vtt_cues(text)
    except ParseError as exc:
        raise ctx.error(exc.reason) from None
    return _result(ctx, cues, title=title)


def srt_cues(text: str) -> list[Block]:
    """The cues of SRT text; ParseError naming the line of a malformed timing, or when no cue holds text."""
    cues: list[Block] = []
    for line_no, lines in _blocks(text):
        # The counter line is optional in practice; the timing line is what we need.
        if not _is_timing(lines[0]) and len(lines) > 1 and lines[0].strip().isdigit():
            line_no, lines = line_no + 1, lines[1:]
        _add_cue(cues, line_no, lines)
    return _some(cues)


def vtt_cues(text: str) -> tuple[list[Block], str | None]:
    """The cues of WebVTT text and the title its header line gives, if any; ParseError as for `srt_cues`."""
    blocks = _blocks(text)
    if not blocks or not re.match(r"^WEBVTT(?:[ \t]|$)", blocks[0][1][0]):
        raise ParseError("not a WebVTT file: the first line must be 'WEBVTT'")
    header = blocks[0][1][0][len("WEBVTT") :].strip(" \t-–—:")
    cues: list[Block] = []
    # Spec says a blank line ends the header, but some tools run straight into the first cue.
    first_line, first_lines = blocks[0]
    timing_at = next((i for i, line in enumerate(first_lines) if "-->" in line), None)
    if timing_at is not None:
        _add_cue(cues, first_line + timing_at, first_lines[timing_at:])
    for line_no, lines in blocks[1:]:
        keyword = lines[0].split(maxsplit=1)[0] if lines[0].strip() else ""
        if keyword in _VTT_SKIP and not any(_is_timing(line) for line in lines[:2]):
            continue
        _add_vtt_cue(cues, line_no, lines)
    return _some(cues), collapse(header) or None


def _some(cues: list[Block]) -> list[Block]:
    if not cues:
        raise ParseError("no cues with text found")
    return cues


def _add_vtt_cue(cues: list[Block], line_no: int, lines: list[str]) -> None:
    # An optional cue identifier precedes the timing line; a line opening with a timestamp is a timing
    # (possibly a broken one, which must be reported rather than skipped as an identifier).
    if len(lines) > 1 and "-->" not in lines[0] and not _LOOKS_TIMED.match(lines[0]):
        line_no, lines = line_no + 1, lines[1:]
    _add_cue(cues, line_no, lines)


def _add_cue(cues: list[Block], line_no: int, lines: list[str]) -> None:
    match = _TIMING.match(lines[0])
    if not match:
        shown = lines[0].strip()[:60]
        raise ParseError(f"line {line_no}: malformed cue timing {shown!r}; expected '00:01:02.500 --> 00:01:05.000'")
    start = _seconds(match.groups()[:4])
    end = _seconds(match.groups()[4:])
    if end < start:
        raise ParseError(f"line {line_no}: cue ends before it starts")
    text = collapse(html.unescape(_SSA.sub("", _TAG.sub("", " ".join(lines[1:])))))
    if text:  # cues with only tags or positioning carry nothing worth indexing
        cues.append(Block(text=text, kind="cue", start_seconds=start, end_seconds=end))


def _result(ctx: SourceContext, cues: list[Block], *, title: str | None) -> ParseResult:
    document = Document(
        kind="transcript",
        creator=ctx.creator,
        document_id=ctx.document_id,
        source=ctx.source,
        title=title or title_from_name(ctx.path),
        blocks=tuple(cues),
    )
    return ParseResult(documents=[document])


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """Blank-line separated groups of lines, each with the 1-based number of its first line."""
    groups: list[tuple[int, list[str]]] = []
    current: list[str] = []
    start = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            if not current:
                start = number
            current.append(line)
        elif current:
            groups.append((start, current))
            current = []
    if current:
        groups.append((start, current))
    return groups


def _is_timing(line: str) -> bool:
    return _TIMING.match(line) is not None


def _seconds(parts: tuple[str | None, ...]) -> float:
    hours, minutes, seconds, millis = parts
    # "1,5" means 500 ms: pad the fraction on the right, as players do.
    fraction = int((millis or "0").ljust(3, "0"))
    return round(int(hours or 0) * 3600 + int(minutes or 0) * 60 + int(seconds or 0) + fraction / 1000, 3)
