"""What fetched bytes become: XML parsed safely, a page's main text, transcripts in every Podcasting 2.0 format.

- XML (feeds, sitemaps) is refused outright when it declares entities (an expansion bomb, an external entity) and
  parsed with defusedxml otherwise; `MalformedXml` lets a feed fall back to feedparser's lenient reading.
- A page's main text comes from trafilatura (headings kept, navigation and boilerplate dropped), else from the
  HTML parser's own chrome stripping (pipeline/sources/html.py).
- Transcripts: WebVTT and SRT through pipeline/sources/transcripts.py, Podcasting 2.0 JSON (segments, often one
  word each, merged into cue-sized blocks) and HTML (`<time>` then `<p>`); every cue keeps its start in seconds,
  so a citation links to `#t=` at that moment.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree
from bs4 import BeautifulSoup, Tag

from backend.stages import Block
from pipeline.channels.http import FetchError, Response
from pipeline.sources.common import ParseError as SourceParseError
from pipeline.sources.common import collapse
from pipeline.sources.html import read_page
from pipeline.sources.markdown import markdown_blocks
from pipeline.sources.transcripts import srt_cues, vtt_cues

_ENTITY_DECLARATION = re.compile(rb"<!ENTITY", re.IGNORECASE)
# JSON transcript segments are merged into one cue until it holds this many words or the speaker changes.
_CUE_WORDS = 40
_CLOCK = re.compile(r"^\s*(?:(\d{1,3}):)?(\d{1,2}):(\d{2})(?:[.,](\d{1,3}))?\s*$")

logging.getLogger("trafilatura").setLevel(logging.ERROR)  # it logs every page it finds too short at WARNING


class XmlRefused(FetchError):
    """XML that declares entities: never expanded, never parsed."""


class MalformedXml(FetchError):
    """XML that is not well-formed."""


def parse_xml(data: bytes, what: str) -> Element:
    """The root element of an XML document, parsed without any entity expansion or external reference."""
    refuse_entities(data, what)
    try:
        return defusedxml.ElementTree.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        raise XmlRefused(f"{what} declares XML entities ({type(exc).__name__}); refused, nothing expanded") from None
    except ParseError as exc:
        raise MalformedXml(f"{what} is not well-formed XML ({exc})") from None


def refuse_entities(data: bytes, what: str) -> None:
    """Any `<!ENTITY` declaration is refused before any parser (strict or lenient) sees the bytes."""
    if _ENTITY_DECLARATION.search(data):
        raise XmlRefused(f"{what} declares XML entities (a possible expansion bomb); refused, nothing expanded")


def local(tag: str) -> str:
    """An element's name without its namespace."""
    return tag.rsplit("}", 1)[-1]


def page_text(response: Response) -> tuple[str | None, str | None, list[Block]]:
    """A fetched page's title, publication date and main text (empty when it has none)."""
    import trafilatura  # a heavy import (lxml, dateparser), only for channels that read pages

    html = response.text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extracted = trafilatura.bare_extraction(
            html, url=response.url, with_metadata=True, include_comments=False, include_formatting=True,
            include_tables=True, include_images=False, include_links=False,
        )  # fmt: skip
    page = read_page(html)
    text = getattr(extracted, "text", None)
    if isinstance(text, str) and text.strip():
        blocks = markdown_blocks(text)
        if blocks:
            title = getattr(extracted, "title", None) or page.title
            published = getattr(extracted, "date", None) or page.published
            return title, published, blocks
    return page.title, page.published, page.blocks


def html_blocks(fragment: str) -> list[Block]:
    """Blocks of an HTML fragment that is all content already (a feed entry's body, show notes)."""
    return read_page(fragment).blocks


def transcript_blocks(response: Response, declared_type: str | None = None) -> list[Block]:
    """A transcript's cues, by its declared type (the feed's `type` attribute), else its Content-Type, else its
    extension and first bytes. SourceParseError when it is unreadable."""
    text = response.text()
    kind = _transcript_kind(declared_type or "", response.content_type, response.url, text)
    if kind == "vtt":
        return vtt_cues(text)[0]
    if kind == "srt":
        return srt_cues(text)
    if kind == "json":
        return json_cues(text)
    return html_transcript(text)


def _transcript_kind(declared: str, served: str, url: str, text: str) -> str:
    for mime in (declared.lower(), served):
        if "vtt" in mime:
            return "vtt"
        if "srt" in mime or "subrip" in mime:
            return "srt"
        if "json" in mime:
            return "json"
        if "html" in mime:
            return "html"
    path = url.split("?", 1)[0].lower()
    head = text.lstrip("\ufeff \n\r\t")[:16]
    if path.endswith(".vtt") or head.startswith("WEBVTT"):
        return "vtt"
    if path.endswith(".srt") or re.match(r"^\d+\s*\n\s*\d", head):
        return "srt"
    if path.endswith(".json") or head.startswith("{"):
        return "json"
    return "html"


def json_cues(text: str) -> list[Block]:
    """Podcasting 2.0 JSON transcripts: {"segments": [{"startTime", "endTime", "body", "speaker"?}]}."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SourceParseError(f"not valid JSON ({exc})") from None
    segments = data.get("segments") if isinstance(data, dict) else None
    if not isinstance(segments, list):
        raise SourceParseError("a JSON transcript needs a 'segments' list")
    cues: list[Block] = []
    words: list[str] = []
    start: float | None = None
    end: float | None = None
    speaker: object = None

    def flush() -> None:
        nonlocal words, start, end
        body = collapse(" ".join(words))
        if body and start is not None:
            cues.append(Block(text=body, kind="cue", start_seconds=start, end_seconds=end))
        words, start, end = [], None, None

    for number, segment in enumerate(segments, start=1):
        if not isinstance(segment, dict):
            raise SourceParseError(f"segment {number} is not an object")
        body, begins, ends = segment.get("body"), segment.get("startTime"), segment.get("endTime")
        if not isinstance(body, str) or not isinstance(begins, int | float) or isinstance(begins, bool):
            raise SourceParseError(f"segment {number} needs a text 'body' and a numeric 'startTime'")
        if segment.get("speaker") != speaker or len(words) >= _CUE_WORDS:
            flush()
            speaker = segment.get("speaker")
        if start is None:
            start = round(float(begins), 3)
        end = round(float(ends), 3) if isinstance(ends, int | float) and not isinstance(ends, bool) else end
        words.append(body)
    flush()
    if not cues:
        raise SourceParseError("no segments with text found")
    return cues


def html_transcript(text: str) -> list[Block]:
    """Podcasting 2.0 HTML transcripts: `<time>` elements give the start of the paragraphs after them; without
    any, the page's paragraphs (no timestamps)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        soup = BeautifulSoup(text, "html.parser")
    cues: list[Block] = []
    start: float | None = None
    timed = False
    for element in soup.find_all(["time", "p"]):
        if not isinstance(element, Tag):
            continue
        if element.name == "time":
            start = clock_seconds(element.get_text() or str(element.get("datetime") or ""))
            timed = timed or start is not None
            continue
        body = collapse(element.get_text(" "))
        if body and start is not None:
            cues.append(Block(text=body, kind="cue", start_seconds=start))
    if timed and cues:
        ends = [cue.start_seconds for cue in cues[1:]] + [None]
        return [
            Block(text=c.text, kind="cue", start_seconds=c.start_seconds, end_seconds=e)
            for c, e in zip(cues, ends, strict=True)
        ]
    blocks = read_page(text).blocks
    if not blocks:
        raise SourceParseError("no text found")
    return blocks


def clock_seconds(value: str) -> float | None:
    """ "1:02:03", "02:03.5" → seconds; None when it is not a clock time."""
    match = _CLOCK.match(value)
    if not match:
        return None
    hours, minutes, seconds, fraction = match.groups()
    millis = int((fraction or "0").ljust(3, "0"))
    return round(int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + millis / 1000, 3)
