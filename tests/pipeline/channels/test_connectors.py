"""The connectors against a real local server (CH2): feeds in every RSS flavour and Atom, full text or the linked
page's main text, podcast transcripts in each Podcasting 2.0 format with cue times, sitemaps with lastmod, a
same-host crawl within its limits, a video page's caption track through yt-dlp, and what `--kind auto` sniffs."""

from __future__ import annotations

import pytest

from backend.settings import ChannelSettings
from pipeline.channels.connectors import CONNECTORS, sniff
from pipeline.channels.http import Fetcher
from pipeline.channels.types import Content, Item, Listing, Source
from tests.fakes.web_server import Fault, WebServer
from tests.pipeline.channels.corpus import (
    HTML,
    RSS,
    TRANSCRIPTS,
    blog_feed,
    page,
    podcast_feed,
    sitemap_site,
    video_page,
)


def listed(kind: str, url: str, http: Fetcher, *, max_items: int | None = None, depth: int = 2) -> Listing:
    return CONNECTORS[kind].list_items(Source(1, "ada", url, kind, max_items, depth), http)


def content(kind: str, item: Item, http: Fetcher) -> Content:
    fetched = CONNECTORS[kind].fetch(item, http, None)
    assert fetched.content is not None
    return fetched.content


FLAVOURS = {
    "rss091": (
        "<?xml version='1.0'?><!DOCTYPE rss PUBLIC '-//Netscape Communications//DTD RSS 0.91//EN' "
        "'http://my.netscape.com/publish/formats/rss-0.91.dtd'><rss version='0.91'><channel><title>T</title>"
        "<link>{base}</link><description>d</description><item><title>Old style</title><link>{base}old</link>"
        "<description>Ninety-one flavoured crumb notes.</description></item></channel></rss>"
    ),
    "rss10": (
        "<?xml version='1.0'?><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#' "
        "xmlns='http://purl.org/rss/1.0/' xmlns:dc='http://purl.org/dc/elements/1.1/'><channel rdf:about='{base}'>"
        "<title>T</title><link>{base}</link><description>d</description></channel>"
        "<item rdf:about='{base}rdf'><title>RDF style</title><link>{base}rdf</link>"
        "<description>Resource described crumb notes.</description><dc:date>2025-12-03T10:00:00Z</dc:date></item>"
        "</rdf:RDF>"
    ),
    "atom": (
        "<?xml version='1.0' encoding='utf-8'?><feed xmlns='http://www.w3.org/2005/Atom'><title>T</title>"
        "<id>urn:t</id><updated>2025-12-04T10:00:00Z</updated><entry><title>Atom style</title>"
        "<id>urn:entry:1</id><link rel='alternate' href='{base}atom'/><updated>2025-12-04T10:00:00Z</updated>"
        "<content type='html'>&lt;p&gt;Atomic crumb notes, whole.&lt;/p&gt;</content></entry></feed>"
    ),
}


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_ch2_feeds_of_every_flavour_list_their_entries(
    web: WebServer, channel_settings: ChannelSettings, flavour: str
) -> None:
    base = web.url("/")
    web.put(f"/{flavour}.xml", FLAVOURS[flavour].format(base=base), RSS)
    for path in ("old", "rdf"):  # summary-only entries read their page
        web.put(f"/{path}", page(f"{path} page", "<p>The linked page's own words about crumb.</p>"), HTML)
    with Fetcher(channel_settings) as http:
        listing = listed("feed", web.url(f"/{flavour}.xml"), http)
        assert listing.complete and len(listing.items) == 1
        item = listing.items[0]
        text = " ".join(block.text for block in content("feed", item, http).blocks)
    assert item.url.startswith(base) and item.title.endswith("style")
    if flavour == "atom":
        assert text == "Atomic crumb notes, whole." and item.published == "2025-12-04T10:00:00Z"
    else:
        assert "The linked page's own words about crumb." in text


def test_ch2_full_text_from_content_encoded_else_the_linked_pages_main_text(
    web: WebServer, channel_settings: ChannelSettings
) -> None:
    url = blog_feed(web, summary_only=("rye",))
    with Fetcher(channel_settings) as http:
        listing = listed("feed", url, http)
        by_title = {item.title: item for item in listing.items}
        assert [item.title for item in listing.items] == [
            "Rye needs a scald",
            "Steam in the oven",
            "Salt and the crumb",
        ]
        full = content("feed", by_title["Salt and the crumb"], http)
        linked = content("feed", by_title["Rye needs a scald"], http)
    assert [b.text for b in full.blocks] == [
        "Salt tightens gluten: I use two percent of the flour weight for a quillfeather crumb."
    ]
    assert full.published == "2025-12-01T09:00:00Z"
    texts = [b.text for b in linked.blocks]
    assert any("zembrot" in text for text in texts)
    assert not any("Subscribe" in text or "About" == text for text in texts)  # navigation and footer dropped
    assert by_title["Rye needs a scald"].revalidate and not by_title["Salt and the crumb"].revalidate


def test_ch2_podcast_transcripts_in_every_format_keep_their_cue_times(
    web: WebServer, channel_settings: ChannelSettings
) -> None:
    url = podcast_feed(web)
    with Fetcher(channel_settings) as http:
        listing = listed("podcast", url, http)
        episodes = {item.title: (item, content("podcast", item, http)) for item in listing.items}
    for number, (_path, _kind, _body, start) in TRANSCRIPTS.items():
        item, transcript = episodes[f"Episode {number}"]
        assert transcript.kind == "transcript"
        assert start in [block.start_seconds for block in transcript.blocks]
        assert all(block.kind == "cue" for block in transcript.blocks)
        expected = web.url(f"/podcast/audio/{number}.mp3") if number == 2 else web.url(f"/podcast/episodes/{number}")
        assert transcript.url == expected == item.url  # citations deep-link here with #t=
    _item, notes = episodes["Episode 5"]
    assert notes.kind == "article" and notes.note == "no transcript: indexed the show notes"
    assert "sprockle oven" in notes.blocks[0].text


def test_ch2_sitemaps_and_sitemap_indexes_carry_lastmod(web: WebServer, channel_settings: ChannelSettings) -> None:
    url = sitemap_site(web)
    web.put(
        "/index.xml",
        "<?xml version='1.0'?><sitemapindex xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>"
        f"<sitemap><loc>{url}</loc></sitemap><sitemap><loc>{web.url('/more.xml')}</loc></sitemap></sitemapindex>",
        "application/xml",
    )
    web.put(
        "/more.xml",
        "<urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>"
        f"<url><loc>{web.url('/site/extra')}</loc></url><url><loc>https://elsewhere.example/x</loc></url></urlset>",
        "application/xml",
    )
    with Fetcher(channel_settings) as http:
        index = listed("sitemap", web.url("/index.xml"), http)
        flat = listed("sitemap", url, http)
        page_content = content("sitemap", flat.items[0], http)
    assert index.complete and len(index.items) == 4 and "1 URLs not on" in index.notes[0]
    assert [(item.token, item.revalidate) for item in flat.items] == [("2025-12-01", False)] * 3
    assert index.items[-1].token is None and index.items[-1].revalidate  # no lastmod: asked again each sync
    assert page_content.title == "Choosing an oven" and "trelloway" in page_content.blocks[-1].text
    web.fault("/more.xml", Fault("status", status=500))
    with Fetcher(channel_settings) as http:
        partial = listed("sitemap", web.url("/index.xml"), http)
    assert not partial.complete and partial.failures and len(partial.items) == 3


def test_ch2_a_site_crawl_stays_on_its_host_within_depth_and_page_limits(
    web: WebServer, channel_settings: ChannelSettings
) -> None:
    web.put("/", page("Home", "<p>Welcome home, bakers.</p>", links=("/a", "/b", "https://elsewhere.example/")), HTML)
    web.put("/a", page("A", "<p>Page a.</p>", links=("/a/deeper", "/files/x.pdf")), HTML)
    web.put("/b", page("B", "<p>Page b.</p>"), HTML)
    web.put("/a/deeper", page("Deeper", "<p>Two clicks down.</p>"), HTML)
    with Fetcher(channel_settings) as http:
        whole = listed("site", web.url("/"), http, depth=2)
        shallow = listed("site", web.url("/"), http, depth=1)
        limited = listed("site", web.url("/"), http, depth=2, max_items=2)
    assert sorted(item.url.removeprefix(web.url("")) for item in whole.items) == ["/", "/a", "/a/deeper", "/b"]
    assert whole.complete and shallow.complete and len(shallow.items) == 3
    assert not limited.complete and len(limited.items) <= 2 and "page limit 2" in limited.notes[0]
    assert "/files/x.pdf" not in [r.path for r in web.requests()]


def test_ch2_a_video_pages_caption_track_becomes_a_timed_transcript(
    web: WebServer, channel_settings: ChannelSettings
) -> None:
    url = video_page(web)
    with Fetcher(channel_settings) as http:
        listing = listed("video", url, http)
        assert listing.complete and len(listing.items) == 1
        transcript = content("video", listing.items[0], http)
    assert transcript.kind == "transcript" and transcript.url == url and transcript.title == "Shaping a batard"
    assert [(b.start_seconds, b.end_seconds) for b in transcript.blocks] == [(0.5, 3.0), (42.0, 47.5)]
    assert "/video/shaping.mp4" not in [r.path for r in web.requests()]  # captions only, never the media


def test_ch1_auto_sniffs_what_a_url_is(web: WebServer, channel_settings: ChannelSettings) -> None:
    urls = {
        "feed": blog_feed(web),
        "podcast": podcast_feed(web),
        "sitemap": sitemap_site(web),
        "video": video_page(web),
        "site": web.url("/blog/salt.html"),
    }
    with Fetcher(channel_settings) as http:
        assert {kind: sniff(url, http) for kind, url in urls.items()} == {kind: kind for kind in urls}
