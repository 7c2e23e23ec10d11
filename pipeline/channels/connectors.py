"""The connectors by kind, and `sniff`: what `channels add --kind auto` makes of a URL (a feed, a podcast feed, a
sitemap, a video page or an HTML page to crawl)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pipeline.channels.feeds import FeedConnector, PodcastConnector
from pipeline.channels.http import Fetcher, FetchError
from pipeline.channels.sitemaps import SiteConnector, SitemapConnector
from pipeline.channels.types import Connector
from pipeline.channels.video import VideoConnector

CONNECTORS: dict[str, Connector] = {
    "feed": FeedConnector(),
    "podcast": PodcastConnector(),
    "sitemap": SitemapConnector(),
    "site": SiteConnector(),
    "video": VideoConnector(),
}

# Video platforms yt-dlp reads (their pages carry no <video> element before scripts run).
_VIDEO_HOSTS = ("youtube.com", "youtu.be", "vimeo.com", "dailymotion.com", "twitch.tv", "rumble.com", "odysee.com")
_PODCAST_MARKS = (b"podcastindex.org/namespace", b"itunes.com/dtds/podcast", b"<podcast:transcript")
_MEDIA_ENCLOSURE = re.compile(rb"<enclosure[^>]+type=[\"'](?:audio|video)/", re.IGNORECASE)


def sniff(url: str, http: Fetcher) -> str:
    """The kind of channel a URL is, from its host, Content-Type and first bytes; FetchError when it cannot tell."""
    host = (urlsplit(url).hostname or "").lower()
    if any(host == known or host.endswith("." + known) for known in _VIDEO_HOSTS):
        return "video"
    response = http.get(url, expect="any")
    head = response.body[:65536]
    lowered = head.lower()
    kind = response.content_type
    if head[:2] == b"\x1f\x8b" or b"<urlset" in lowered or b"<sitemapindex" in lowered:
        return "sitemap"
    if b"<rss" in lowered or b"<feed" in lowered or b"<rdf:rdf" in lowered:
        marks = any(mark in lowered for mark in _PODCAST_MARKS)
        return "podcast" if marks or _MEDIA_ENCLOSURE.search(head) else "feed"
    if "html" in kind or b"<html" in lowered or b"<!doctype html" in lowered:
        return "video" if b"<video" in lowered or b"<track" in lowered else "site"
    raise FetchError(
        f"cannot tell what {url} is (Content-Type {kind or 'none'}): give --kind feed, podcast, sitemap, site or video"
    )
