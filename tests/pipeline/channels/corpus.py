"""What the channel tests serve from tests/fakes/web_server.py: a blog feed (full-text and summary-only entries), a
podcast feed with a transcript in each Podcasting 2.0 format and an episode without one, a sitemap site, and a
video page whose HTML5 <video> carries a <track kind="subtitles">."""

from __future__ import annotations

import json

from tests.fakes.web_server import WebServer

RSS = "application/rss+xml"
HTML = "text/html; charset=utf-8"


def page(title: str, body: str, *, links: tuple[str, ...] = ()) -> str:
    anchors = "".join(f'<li><a href="{link}">{link}</a></li>' for link in links)
    return (
        f"<!doctype html><html><head><title>{title} | Ada's bakery</title></head><body>"
        f"<nav><ul><li><a href='/'>Home</a></li><li><a href='/about'>About</a></li></ul></nav>"
        f"<main><article><h1>{title}</h1>{body}</article><ul class='related'>{anchors}</ul></main>"
        f"<footer>© Ada's bakery. Subscribe to the newsletter.</footer></body></html>"
    )


BLOG_POSTS = {
    "salt": (
        "Salt and the crumb",
        "Salt tightens gluten: I use two percent of the flour weight for a quillfeather crumb.",
    ),
    "steam": ("Steam in the oven", "Steam in the first minutes keeps the crust soft so the loaf can spring open wide."),
    "rye": (
        "Rye needs a scald",
        "Rye flour drinks water: scald a third of it first and the zembrot dough stops tearing.",
    ),
}


def blog_feed(
    web: WebServer, *, posts: dict[str, tuple[str, str]] | None = None, summary_only: tuple[str, ...] = ()
) -> str:
    """An RSS 2.0 feed: full text in content:encoded, except the `summary_only` posts, whose entries link to their
    page; the pages are served too."""
    posts = BLOG_POSTS if posts is None else posts
    items = []
    for day, (slug, (title, text)) in enumerate(posts.items(), start=1):
        link = web.url(f"/blog/{slug}.html")
        web.put(f"/blog/{slug}.html", page(title, f"<p>{text}</p><p>More on {title.lower()} next week.</p>"), HTML)
        content = "" if slug in summary_only else f"<content:encoded><![CDATA[<p>{text}</p>]]></content:encoded>"
        items.append(
            f"<item><title>{title}</title><link>{link}</link><guid isPermaLink='false'>post-{slug}</guid>"
            f"<pubDate>Mon, {day:02d} Dec 2025 09:00:00 GMT</pubDate><description>{title} in short.</description>"
            f"{content}</item>"
        )
    feed = (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0' "
        "xmlns:content='http://purl.org/rss/1.0/modules/content/'><channel><title>Ada bakes</title>"
        f"<link>{web.url('/blog/')}</link><description>Bread notes</description>{''.join(items)}</channel></rss>"
    )
    web.put("/blog/feed.xml", feed, RSS)
    return web.url("/blog/feed.xml")


# A first cue long enough that it and the next do not fit one chunk (the tests chunk at 32 tokens): the cue a
# question is about starts a chunk of its own, and its citation links to that cue's time.
INTRO = "Welcome back to the crust show, where two home bakers talk through every loaf that went wrong this week."
TRANSCRIPTS = {
    # episode: (path, type, body, (first cue text, its start))
    1: ("/podcast/1.vtt", "text/vtt",
        f"WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n{INTRO}\n\n"
        "00:01:05.500 --> 00:01:09.000\nA banneton lined with rice flour never sticks, said the glimmerwick baker.\n",
        65.5),
    2: ("/podcast/2.srt", "application/x-subrip",
        f"1\n00:00:02,000 --> 00:00:05,000\n{INTRO}\n\n"
        "2\n00:02:00,000 --> 00:02:04,000\nFold the dough every thirty minutes during the vornhaven bulk rise.\n",
        120.0),
    3: ("/podcast/3.json", "application/json",
        json.dumps({"version": "1.0.0", "segments": [
            {"speaker": "Ada", "startTime": 3.2, "endTime": 4.0, "body": INTRO},
            {"speaker": "Tom", "startTime": 90.5, "endTime": 92.0, "body": "A cold retard overnight gives"},
            {"speaker": "Tom", "startTime": 92.0, "endTime": 95.0, "body": "the quorbel loaf its blisters."},
        ]}),
        90.5),
    4: ("/podcast/4.html", "text/html",
        f"<html><body><cite>Ada:</cite><time>0:07</time><p>{INTRO}</p>"
        "<time>1:02:03</time><p>Bake the flimbrook bagels hot, then lower the oven.</p></body></html>",
        3723.0),
}  # fmt: skip


def podcast_feed(web: WebServer) -> str:
    """Episodes 1-4 carry a transcript each (VTT, SRT, JSON, HTML); episode 2 has no page (its audio is cited);
    episode 5 has no transcript, only show notes."""
    items = []
    for number in range(1, 6):
        transcript = ""
        if number in TRANSCRIPTS:
            path, kind, body, _start = TRANSCRIPTS[number]
            web.put(path, body, kind)
            transcript = f"<podcast:transcript url='{web.url(path)}' type='{kind}' language='en'/>"
        link = "" if number == 2 else f"<link>{web.url(f'/podcast/episodes/{number}')}</link>"
        items.append(
            f"<item><title>Episode {number}</title><guid isPermaLink='false'>episode-{number}</guid>{link}"
            f"<pubDate>Mon, {number:02d} Dec 2025 09:00:00 GMT</pubDate>"
            f"<description>Show notes {number}: we talk about the sprockle oven and its stones.</description>"
            f"<enclosure url='{web.url(f'/podcast/audio/{number}.mp3')}' type='audio/mpeg' length='1000'/>"
            f"{transcript}</item>"
        )
    feed = (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0' "
        "xmlns:podcast='https://podcastindex.org/namespace/1.0' "
        "xmlns:itunes='http://www.itunes.com/dtds/podcast-1.0.dtd'><channel><title>The crust show</title>"
        f"<link>{web.url('/podcast/')}</link>{''.join(items)}</channel></rss>"
    )
    web.put("/podcast/feed.xml", feed, RSS)
    return web.url("/podcast/feed.xml")


SITE_PAGES = {
    "ovens": ("Choosing an oven", "A deck oven with a stone keeps the heat the trelloway way."),
    "flour": ("Flour strength", "Strong flour near thirteen percent protein suits the brannock bake."),
    "water": ("Water temperature", "Aim for a dough temperature of twenty-five degrees with the pellmore method."),
}


def sitemap_site(web: WebServer, *, pages: dict[str, tuple[str, str]] | None = None, lastmod: bool = True) -> str:
    pages = SITE_PAGES if pages is None else pages
    urls = []
    for slug, (title, text) in pages.items():
        web.put(f"/site/{slug}", page(title, f"<p>{text}</p>"), HTML)
        modified = "<lastmod>2025-12-01</lastmod>" if lastmod else ""
        urls.append(f"<url><loc>{web.url(f'/site/{slug}')}</loc>{modified}</url>")
    sitemap = (
        "<?xml version='1.0' encoding='utf-8'?><urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>"
        f"{''.join(urls)}</urlset>"
    )
    web.put("/site/sitemap.xml", sitemap, "application/xml")
    return web.url("/site/sitemap.xml")


CAPTIONS = (
    f"WEBVTT\n\n00:00:00.500 --> 00:00:03.000\nToday: shaping a batard. {INTRO}\n\n"
    "00:00:42.000 --> 00:00:47.500\nTuck the dough toward you to build the snorrel tension on the skin.\n"
)


def video_page(web: WebServer) -> str:
    web.put("/video/shaping.vtt", CAPTIONS, "text/vtt")
    web.put(
        "/video/shaping.html",
        "<!doctype html><html><head><title>Shaping a batard</title></head><body><h1>Shaping a batard</h1>"
        "<video controls width='640' src='/video/shaping.mp4'>"
        "<track kind='subtitles' srclang='en' label='English' src='/video/shaping.vtt'></video></body></html>",
        HTML,
    )
    return web.url("/video/shaping.html")


def xml_bomb() -> str:
    lines = ['<?xml version="1.0"?>', "<!DOCTYPE lolz [", ' <!ENTITY lol "lol">']
    lines += [f' <!ENTITY lol{n} "{("&lol" + (str(n - 1) if n > 1 else "") + ";") * 10}">' for n in range(1, 10)]
    lines += ["]>", "<rss version='2.0'><channel><title>&lol9;</title></channel></rss>"]
    return "\n".join(lines)
