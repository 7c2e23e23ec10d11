"""The connector contract: a connector lists a source's items, each with a stable key and a change token, and
fetches one item into `Content` (its text as blocks, its own URL for citations, its publication date).

- `Source`: the channel as a connector sees it.
- `Item`: one entry, episode, page or video. `key` is stable across syncs (an entry id, a page URL, a video id);
  `token` changes when the listing says the item changed (an entry's content hash, a sitemap `lastmod`); with
  `revalidate` the item is also asked again with its HTTP validators each sync (a page the listing only links to).
  `data` holds what `fetch` needs, as JSON, so an item can be fetched again when the listing itself answered 304.
- `Listing`: the items, and whether the source was read whole (only then may vanished items be pruned).
- `Fetched`: the item's `Content`, or "not modified" (304), with the validators to send next time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from backend.stages import Block, DocumentKind
from pipeline.channels.http import Fetcher, Validators


@dataclass(frozen=True, slots=True)
class Item:
    key: str
    url: str
    title: str = ""
    published: str | None = None
    token: str | None = None
    revalidate: bool = False
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def key_hash(self) -> str:
        return hashlib.sha256(self.key.encode("utf-8", "surrogatepass")).hexdigest()

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "url": self.url, "title": self.title, "published": self.published, "token": self.token,
            "revalidate": self.revalidate, "data": self.data,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Item:
        return cls(
            key=str(data["key"]), url=str(data["url"]), title=str(data.get("title") or ""),
            published=data.get("published"), token=data.get("token"), revalidate=bool(data.get("revalidate")),
            data=dict(data.get("data") or {}),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Known:
    """An item as the last sync left it: what a crawl needs to ask a page again and, on a 304, to go on."""

    item: Item
    validators: Validators


@dataclass(frozen=True, slots=True)
class Source:
    channel_id: int
    creator: str
    url: str
    kind: str
    max_items: int | None
    depth: int
    # The listing's own validators from the last sync (a feed or sitemap answering 304).
    validators: Validators = field(default_factory=Validators)
    # The items the last sync indexed, by key (a crawl asks each page again with its validators).
    known: dict[str, Known] = field(default_factory=dict)


@dataclass(slots=True)
class Listing:
    items: list[Item]
    # Read whole and successfully: an item missing from it is gone from the source. False for anything partial
    # (a child sitemap failed, a crawl hit its page limit, lenient parsing of broken XML).
    complete: bool
    not_modified: bool = False
    validators: Validators = field(default_factory=Validators)
    notes: list[str] = field(default_factory=list)
    # (source, reason) for parts of the listing that failed without sinking it (a child sitemap).
    failures: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Content:
    title: str
    blocks: tuple[Block, ...]
    kind: DocumentKind
    url: str | None = None  # where citations link; the item's URL when None
    published: str | None = None
    note: str | None = None  # said in the report (an episode without a transcript)


@dataclass(frozen=True, slots=True)
class Fetched:
    content: Content | None  # None: not modified
    validators: Validators = field(default_factory=Validators)
    # What the item learned that the next sync needs (a crawled page's links), merged into Item.data.
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def not_modified(self) -> bool:
        return self.content is None


class Connector(Protocol):
    def list_items(self, source: Source, http: Fetcher) -> Listing:
        """The source's items, newest first where the source has an order; FetchError when it cannot be read."""
        ...

    def fetch(self, item: Item, http: Fetcher, validators: Validators | None, *, indexed: bool = False) -> Fetched:
        """One item's content; with validators, `Fetched(None)` when the server says it did not change. `indexed`:
        the item has a document now, which a failure keeps (so no fallback may replace it)."""
        ...


def digest(*parts: object) -> str:
    """A change token: sha256 over the parts' text."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(repr(part).encode("utf-8", "surrogatepass"))
        hasher.update(b"\x00")
    return hasher.hexdigest()
