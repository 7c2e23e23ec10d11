"""Feeds and podcasts: RSS 0.9x/1.0/2.0 and Atom through feedparser, after the bytes passed the XML safety check.

- **Articles** (`FeedConnector`): each entry is a document. Its text is the entry's full content
  (`content:encoded`, Atom `content`); an entry that holds only a summary takes the main text of the page it links
  to, asked again each sync with that page's validators (a 304 costs nothing).
- **Podcasts** (`PodcastConnector`): each episode's Podcasting 2.0 `<podcast:transcript>` (WebVTT, SRT, JSON or HTML,
  best timed format first) becomes a transcript whose cues cite the episode page, or the enclosure when the episode
  has no page, at `#t=<seconds>`; an episode without a transcript keeps its show notes, and the report says so.

An entry's change token hashes what the document is made of, so an unchanged entry is neither fetched nor
embedded again. A feed is a window of its latest entries: what scrolls out stays indexed unless the channel says
otherwise (`channels add --prune-missing`).
"""

from __future__ import annotations

import calendar
import time
import warnings
from typing import Any

from backend.stages import Block
from pipeline.channels.content import (
    MalformedXml,
    html_blocks,
    local,
    page_text,
    parse_xml,
    refuse_entities,
    transcript_blocks,
)
from pipeline.channels.http import Fetcher, FetchError, Response, Validators, gunzip
from pipeline.channels.types import Content, Fetched, Item, Listing, Source, digest
from pipeline.sources.common import ParseError, collapse

# Transcript formats, most useful first: timed cues before untimed text.
_TRANSCRIPT_ORDER = ("vtt", "srt", "subrip", "json", "html", "")


def read_feed(response: Response, settings_limit: int) -> tuple[Any, Any, list[str]]:
    """(feedparser's result, the safely parsed XML root or None, notes). FetchError when it is no feed at all."""
    import feedparser  # only channels need it

    data = response.body
    if response.content_type in ("application/gzip", "application/x-gzip") or data[:2] == b"\x1f\x8b":
        data = gunzip(data, settings_limit, response.url)
    notes: list[str] = []
    root = None
    refuse_entities(data, response.url)
    try:
        root = parse_xml(data, response.url)
    except MalformedXml as exc:
        notes.append(f"{exc.reason}: read leniently, nothing pruned")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = feedparser.parse(
            data,
            sanitize_html=True,
            resolve_relative_uris=True,
            response_headers={
                "content-location": response.url,
                "content-type": response.headers.get("content-type", ""),
            },
        )
    if not parsed.entries and (root is None or not parsed.version):
        why = notes[0] if notes else f"{response.url} is not an RSS or Atom feed"
        raise FetchError(why)
    return parsed, root, notes


class FeedConnector:
    """Blog and newsletter feeds: one article per entry."""

    kind = "feed"

    def list_items(self, source: Source, http: Fetcher) -> Listing:
        response = http.get(source.url, expect="xml", validators=source.validators)
        if response.not_modified:
            return Listing(items=[], complete=False, not_modified=True, validators=source.validators)
        parsed, root, notes = read_feed(response, http.settings.max_item_bytes)
        extras = _extras(root)
        items = [self.item(entry, source, extras=extras) for entry in _newest_first(parsed.entries)]
        return Listing(items=items, complete=root is not None, validators=response.validators, notes=notes)

    def item(self, entry: Any, source: Source, *, extras: dict[str, list[dict[str, str]]]) -> Item:
        link = _text(entry.get("link"))
        title = collapse(_text(entry.get("title"))) or "Untitled"
        published = _published(entry)
        content = _content_html(entry)
        summary = _text(entry.get("summary"))
        key = _text(entry.get("id")) or link or digest(title, published, summary)
        data: dict[str, Any]
        if content:
            data = {"_html": content}
        elif link and link != source.url:
            data = {"page": link, "_summary": summary}
        else:
            data = {"_html": summary}
        return Item(
            key=key, url=link or source.url, title=title, published=published,
            token=digest(title, link, published, content or summary), revalidate="page" in data, data=data,
        )  # fmt: skip

    def fetch(self, item: Item, http: Fetcher, validators: Validators | None, *, indexed: bool = False) -> Fetched:
        page = item.data.get("page")
        if not page:
            return Fetched(
                Content(item.title, _blocks(item.data.get("_html", "")), "article", published=item.published)
            )
        try:
            response = http.get(str(page), expect="html", validators=validators)
        except FetchError as exc:
            summary = html_blocks(str(item.data.get("_summary") or ""))
            if indexed or not summary:
                raise
            note = f"{page}: {exc.reason}; indexed the entry's summary instead"
            return Fetched(Content(item.title, tuple(summary), "article", published=item.published, note=note))
        if response.not_modified:
            return Fetched(None, validators or Validators())
        title, published, blocks = page_text(response)
        if not blocks:
            blocks = html_blocks(str(item.data.get("_summary") or ""))
        content = Content(item.title or title or page, tuple(blocks), "article", published=item.published or published)
        return Fetched(content, response.validators)


class PodcastConnector(FeedConnector):
    """Podcast feeds: each episode's transcript, with deep links to the moment each cue starts."""

    kind = "podcast"

    def item(self, entry: Any, source: Source, *, extras: dict[str, list[dict[str, str]]]) -> Item:
        link = _text(entry.get("link"))
        enclosure = next((_text(e.get("href")) for e in entry.get("enclosures", []) if e.get("href")), "")
        title = collapse(_text(entry.get("title"))) or "Untitled episode"
        published = _published(entry)
        notes = _content_html(entry) or _text(entry.get("summary"))
        guid = _text(entry.get("id"))
        transcripts = next((extras[k] for k in (guid, link, enclosure) if k and k in extras), None)
        if transcripts is None:
            single = entry.get("podcast_transcript")  # feedparser keeps only the last one, when XML parsing failed
            transcripts = [dict(single)] if isinstance(single, dict) and single.get("url") else []
        transcripts = sorted(transcripts, key=_transcript_rank)
        # An episode's citation: its page, else its audio (browsers seek media to #t= as well).
        url = link if link and link != source.url else enclosure or link or source.url
        return Item(
            key=guid or enclosure or link or digest(title, published), url=url, title=title, published=published,
            token=digest(title, url, published, notes, [t.get("url") for t in transcripts]),
            data={"transcripts": transcripts, "_notes": notes},
        )  # fmt: skip

    def fetch(self, item: Item, http: Fetcher, validators: Validators | None, *, indexed: bool = False) -> Fetched:
        notes = _blocks(str(item.data.get("_notes") or ""))
        problems: list[str] = []
        for transcript in item.data.get("transcripts", []):
            url = str(transcript.get("url") or "")
            try:
                response = http.get(url, expect="transcript")
                cues = transcript_blocks(response, transcript.get("type"))
            except FetchError as exc:
                problems.append(exc.reason)
                continue
            except ParseError as exc:
                problems.append(f"{url}: {exc.reason}")
                continue
            return Fetched(Content(item.title, tuple(cues), "transcript", url=item.url, published=item.published))
        if problems and indexed:
            raise FetchError("; ".join(problems))  # keep the transcript indexed last time rather than its notes
        if not notes:
            raise FetchError("; ".join(problems) or "no transcript and no show notes")
        note = (
            f"transcript unreadable ({'; '.join(problems)}): indexed the show notes"
            if problems
            else "no transcript: indexed the show notes"
        )
        return Fetched(Content(item.title, notes, "article", url=item.url, published=item.published, note=note))


def _extras(root: Any) -> dict[str, list[dict[str, str]]]:
    """Every `<podcast:transcript>` of every item, by the item's guid, link and enclosure URL (feedparser keeps only
    one per item)."""
    found: dict[str, list[dict[str, str]]] = {}
    if root is None:
        return found
    for element in root.iter():
        if local(str(element.tag)) not in ("item", "entry"):
            continue
        transcripts = [
            {k: str(v) for k, v in child.attrib.items() if k in ("url", "type", "language", "rel")}
            for child in element
            if local(str(child.tag)) == "transcript" and child.get("url")
        ]
        for child in element:
            name = local(str(child.tag))
            value = (child.text or "").strip() if name in ("guid", "id", "link") else ""
            if name == "link" and not value:
                value = child.get("href") or ""
            if name == "enclosure":
                value = child.get("url") or ""
            if value:
                found.setdefault(value, transcripts)
    return found


def _transcript_rank(transcript: dict[str, str]) -> int:
    kind = (transcript.get("type") or "").lower()
    return next(i for i, word in enumerate(_TRANSCRIPT_ORDER) if word in kind)


def _newest_first(entries: list[Any]) -> list[Any]:
    """Most feeds list newest first; when every entry is dated, order by date so --max-items keeps the latest."""
    if entries and all(entry.get("published_parsed") or entry.get("updated_parsed") for entry in entries):
        return sorted(entries, key=lambda e: tuple(e.get("published_parsed") or e.get("updated_parsed")), reverse=True)
    return list(entries)


def _content_html(entry: Any) -> str:
    contents = [c for c in entry.get("content", []) if isinstance(c, dict) and c.get("value")]
    if not contents:
        return ""
    html = [c for c in contents if "html" in str(c.get("type", ""))] or contents
    return str(max(html, key=lambda c: len(str(c["value"])))["value"])


def _published(entry: Any) -> str | None:
    moment = entry.get("published_parsed") or entry.get("updated_parsed")
    if moment:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(calendar.timegm(moment)))
    text = _text(entry.get("published") or entry.get("updated"))
    return text or None


def _blocks(html: str) -> tuple[Block, ...]:
    return tuple(html_blocks(html)) if html.strip() else ()


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""
