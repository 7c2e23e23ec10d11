"""Sitemaps and sites: pages read for their main text only.

- **Sitemaps** (`SitemapConnector`): `sitemap.xml` (gzip'd too) or a sitemap index and its sitemaps. A URL's
  `lastmod` is its change token: unchanged, the page is not asked for at all; without one, the page is asked again
  with its validators each sync. Only URLs on the sitemap's own host are read.
- **Sites** (`SiteConnector`): a same-host crawl from a start page, breadth first, to `channels.crawl_depth` clicks
  and `--max-items` pages, each page asked with its validators (a 304 page goes on with the links it had).

A listing is complete only when everything was read: a child sitemap that failed, a page that failed or a crawl
that hit its page limit makes it partial, and a partial listing prunes nothing.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urljoin, urlsplit

from bs4 import BeautifulSoup

from pipeline.channels.content import local, page_text, parse_xml
from pipeline.channels.http import Fetcher, FetchError, Response, Validators, check_url, gunzip
from pipeline.channels.types import Content, Fetched, Item, Listing, Source, digest

# Sitemaps read from one index at most, and pages a crawl reads when the channel sets no --max-items.
MAX_CHILD_SITEMAPS = 1000
DEFAULT_CRAWL_PAGES = 200
# Links a crawl never follows: files that are not pages.
_NOT_PAGES = (
    ".7z", ".avi", ".css", ".csv", ".doc", ".docx", ".epub", ".gif", ".gz", ".ico", ".jpeg", ".jpg", ".js", ".json",
    ".m4a", ".mov", ".mp3", ".mp4", ".ogg", ".pdf", ".png", ".rss", ".svg", ".tar", ".tgz", ".wav", ".webm", ".webp",
    ".woff", ".woff2", ".xls", ".xlsx", ".xml", ".zip",
)  # fmt: skip


def _same_site(url: str, host: str) -> bool:
    other = urlsplit(url).netloc.lower()
    return other.removeprefix("www.") == host.lower().removeprefix("www.")


def _xml(response: Response, limit: int) -> Any:
    data = response.body
    if response.content_type in ("application/gzip", "application/x-gzip") or data[:2] == b"\x1f\x8b":
        data = gunzip(data, limit, response.url)
    return parse_xml(data, response.url)


def _locations(root: Any, tag: str) -> list[tuple[str, str | None]]:
    """(loc, lastmod) of every <url> or <sitemap> child of a sitemap root."""
    found = []
    for element in root:
        if local(str(element.tag)) != tag:
            continue
        values = {local(str(child.tag)): (child.text or "").strip() for child in element}
        if values.get("loc"):
            found.append((values["loc"], values.get("lastmod") or None))
    return found


def page_content(response: Response, *, title: str = "", published: str | None = None) -> Content:
    found_title, found_published, blocks = page_text(response)
    return Content(title or found_title or response.url, tuple(blocks), "page", published=published or found_published)


class SitemapConnector:
    kind = "sitemap"

    def list_items(self, source: Source, http: Fetcher) -> Listing:
        response = http.get(source.url, expect="xml", validators=source.validators)
        if response.not_modified:
            return Listing(items=[], complete=False, not_modified=True, validators=source.validators)
        limit = http.settings.max_item_bytes
        root = _xml(response, limit)
        name = local(str(root.tag))
        listing = Listing(items=[], complete=True, validators=response.validators)
        if name == "urlset":
            entries = _locations(root, "url")
        elif name == "sitemapindex":
            listing.validators = Validators()  # an index's 304 says nothing about its sitemaps: always read them
            entries = []
            children = _locations(root, "sitemap")
            if len(children) > MAX_CHILD_SITEMAPS:
                listing.complete = False
                listing.notes.append(f"only the first {MAX_CHILD_SITEMAPS} of {len(children)} sitemaps were read")
            for child, _lastmod in children[:MAX_CHILD_SITEMAPS]:
                try:
                    child_root = _xml(http.get(child, expect="xml"), limit)
                    if local(str(child_root.tag)) != "urlset":
                        raise FetchError(f"{child} is not a <urlset> sitemap (nested indexes are not followed)")
                except FetchError as exc:
                    listing.complete = False
                    listing.failures.append((child, exc.reason))
                    continue
                entries.extend(_locations(child_root, "url"))
        else:
            raise FetchError(f"{response.url} is not a sitemap (its root element is <{name}>)")
        host = urlsplit(response.url).netloc
        skipped = 0
        seen: set[str] = set()
        for loc, lastmod in entries:
            try:
                url = check_url(urljoin(response.url, loc))
            except FetchError:
                skipped += 1
                continue
            if not _same_site(url, host):
                skipped += 1
                continue
            if url in seen:
                continue
            seen.add(url)
            listing.items.append(Item(key=url, url=url, token=lastmod, revalidate=lastmod is None))
        if skipped:
            listing.notes.append(f"{skipped} URLs not on {host} (or not http/https) skipped")
        return listing

    def fetch(self, item: Item, http: Fetcher, validators: Validators | None, *, indexed: bool = False) -> Fetched:
        response = http.get(item.url, expect="html", validators=validators)
        if response.not_modified:
            return Fetched(None, validators or Validators())
        return Fetched(page_content(response), response.validators)


class SiteConnector:
    kind = "site"

    def list_items(self, source: Source, http: Fetcher) -> Listing:
        start = check_url(source.url)
        host = urlsplit(start).netloc
        limit = source.max_items or DEFAULT_CRAWL_PAGES
        listing = Listing(items=[], complete=True)
        seen = {start}
        frontier = [start]
        depth = 0
        with ThreadPoolExecutor(max_workers=http.settings.per_host_concurrency, thread_name_prefix="crawl") as pool:
            while frontier:
                results = list(pool.map(lambda url: self._visit(url, source, http, host), frontier))
                next_frontier: list[str] = []
                for url, result in zip(frontier, results, strict=True):
                    if isinstance(result, FetchError):
                        listing.complete = False
                        listing.failures.append((url, result.reason))
                        continue
                    if result is None:  # a broken link, or redirected off the site: not one of its pages
                        continue
                    listing.items.append(result)
                    if depth >= source.depth:
                        continue
                    for link in result.data.get("links", []):
                        if link in seen:
                            continue
                        if len(seen) >= limit:
                            if listing.complete:
                                listing.notes.append(f"page limit {limit} reached: the crawl stopped, nothing pruned")
                            listing.complete = False
                            break
                        seen.add(link)
                        next_frontier.append(link)
                frontier = next_frontier
                depth += 1
        return listing

    def _visit(self, url: str, source: Source, http: Fetcher, host: str) -> Item | FetchError | None:
        known = source.known.get(url)
        try:
            response = http.get(url, expect="html", validators=known.validators if known else None)
        except FetchError as exc:
            # A broken link (404, 410) is a definite answer: no such page. Anything else leaves the crawl partial.
            return None if exc.status in (404, 410) else exc
        if response.not_modified and known is not None:
            return known.item
        if not _same_site(response.url, host):
            return None
        links = _links(response, host)
        return Item(
            key=url, url=url, token=digest(response.body),
            data={"links": links, "_content": page_content(response), "_validators": response.validators},
        )  # fmt: skip

    def fetch(self, item: Item, http: Fetcher, validators: Validators | None, *, indexed: bool = False) -> Fetched:
        content = item.data.get("_content")
        if isinstance(content, Content):  # read by the crawl a moment ago
            found = item.data.get("_validators")
            return Fetched(content, found if isinstance(found, Validators) else Validators())
        return SitemapConnector().fetch(item, http, validators, indexed=indexed)


def _links(response: Response, host: str) -> list[str]:
    """Same-site page links of a page, absolute, without fragments, in page order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        soup = BeautifulSoup(response.text(), "html.parser")
    base = response.url
    tag = soup.find("base", href=True)
    if tag is not None:
        base = urljoin(base, str(tag["href"]))
    links: dict[str, None] = {}
    for anchor in soup.find_all("a", href=True):
        href = str(anchor["href"]).strip()
        if not href or href.startswith(("#", "mailto:", "javascript:", "tel:", "data:")):
            continue
        try:
            url = check_url(urljoin(base, href))
        except FetchError:
            continue
        if _same_site(url, host) and not urlsplit(url).path.lower().endswith(_NOT_PAGES):
            links[url] = None
    return list(links)
