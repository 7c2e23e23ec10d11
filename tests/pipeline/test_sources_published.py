"""Documentation as its generator published it: the chrome inside a page (html.py) and the generated files beside
the pages (site_builds.py), on pages written here in the shapes Sphinx, Docusaurus and GitHub give them. The Flask
documentation's real build is read in test_eval_published.py."""

from __future__ import annotations

from pathlib import Path

from pipeline.sources import content_files
from tests.pipeline.source_files import parse, parse_one, write

# The shape of a Sphinx page (basic and alabaster themes): a related-links bar and a sidebar marked as navigation,
# the page body marked as the main landmark, permalinks after headings and signatures, a hidden search box, a
# pre-HTML5 footer.
SPHINX_PAGE = """<!DOCTYPE html><html><head><title>API — Widgets 2.0</title></head><body>
<div class="related" role="navigation" aria-label="related navigation"><h3>Navigation</h3>
<ul><li><a href="genindex.html">index</a></li><li><a href="intro.html">previous</a> |</li></ul></div>
<div class="document"><div class="documentwrapper"><div class="body" role="main">
<section id="api"><h1>API<a class="headerlink" href="#api" title="Permalink to this heading">¶</a></h1>
<p>This part covers every interface.</p>
<dl class="py function"><dt class="sig sig-object py" id="widgets.spin">
<span class="sig-prename descclassname">widgets.</span><span class="sig-name descname">spin</span>\
<span class="sig-paren">(</span><em class="sig-param">speed</em><span class="sig-paren">)</span>\
<a class="headerlink" href="#widgets.spin" title="Permalink to this definition">¶</a></dt>
<dd><p>Spin the widget at <em>speed</em> turns a second.</p></dd></dl>
<p>See <a href="#widgets.spin">the spin function</a> above.</p>
</section></div></div>
<div class="sphinxsidebar" role="navigation" aria-label="main navigation"><h3>Contents</h3>
<ul><li><a href="#widgets.spin">widgets.spin()</a></li></ul>
<div id="searchbox" style="display: none" role="search"><h3>Quick search</h3><form><input name="q"></form></div>
</div></div>
<div class="footer">&copy; Copyright 2025 Widget makers. Created using Sphinx.</div>
</body></html>"""


def test_a_sphinx_page_is_its_body_without_chrome_or_permalinks(tmp_path: Path) -> None:
    doc = parse_one(write(tmp_path, "api.html", SPHINX_PAGE))
    assert [(b.kind, b.text) for b in doc.blocks] == [
        ("heading", "API"),
        ("paragraph", "This part covers every interface."),
        ("paragraph", "widgets.spin(speed)"),
        ("paragraph", "Spin the widget at speed turns a second."),
        # A link into the page that says something is text, not a permalink.
        ("paragraph", "See the spin function above."),
    ]
    for chrome in ("Navigation", "previous", "Contents", "Quick search", "Copyright", "¶"):
        assert chrome not in doc.text


def test_permalink_marks_of_other_generators_are_dropped(tmp_path: Path) -> None:
    """Docusaurus: a zero-width space in a link classed `hash-link`; GitHub: an icon-only link hidden from screen
    readers; MkDocs: "#" as a header anchor; a link emoji."""
    page = (
        '<main><h2>Install<a class="hash-link" href="#install" aria-label="Direct link to Install">\u200b</a></h2>'
        '<h2><a aria-hidden="true" class="anchor" href="#usage"><svg></svg></a>Usage</h2>'
        '<h3>Options <a class="headerlink" href="#options">#</a></h3>'
        '<h3>Limits <a href="#limits">🔗</a></h3><p>Run <a href="#install">install</a> first.</p>'
        '<p>An <a href="https://example.com/#top">outside link</a> stays.</p></main>'
    )
    doc = parse_one(write(tmp_path, "guide.html", page))
    assert [b.text for b in doc.blocks] == [
        "Install", "Usage", "Options", "Limits", "Run install first.", "An outside link stays.",
    ]  # fmt: skip


def test_landmarks_hidden_parts_and_the_main_role(tmp_path: Path) -> None:
    page = (
        '<body><div role="banner">Site name</div><div role="complementary">Related posts</div>'
        '<div role="main"><p>The page itself.</p><p style="visibility: hidden">Invisible.</p>'
        '<span aria-hidden="true">★★★</span><p>More of it.</p></div>'
        '<div id="footer">Imprint</div><div role="contentinfo">Contact</div></body>'
    )
    doc = parse_one(write(tmp_path, "page.html", page))
    assert doc.text == "The page itself.\n\nMore of it."


# The shape of a page whose theme marks no landmark (Django's and SQLAlchemy's documentation): the site's name as a
# first h1 linking home, link bars with separators above and below the body, a sidebar of its own.
UNMARKED_PAGE = """<html><head><title>FAQ: Getting Help — Widgets 3.2 documentation</title></head><body>
<div id="hd"><h1><a href="../index.html">Widgets 3.2 documentation</a></h1>
<div id="global-nav"><a href="../index.html">Home</a> | <a href="../contents.html">Table of contents</a> |
<a href="../genindex.html">Index</a></div>
<div class="nav">&laquo; <a href="usage.html">previous</a> | <a href="index.html">up</a> |
<a href="models.html">next</a> &raquo;</div></div>
<div id="bd"><h1>FAQ: Getting Help<a class="headerlink" href="#faq">¶</a></h1>
<p>Ask on the <a href="https://forum.example">forum</a> or the <a href="https://list.example">list</a>.</p>
<p><a href="install.html">Install</a>, <a href="run.html">Run</a></p>
<dl><dt>Return type</dt><dd><p><a href="#t">Optional</a>[<a href="#w">Widget</a>]</p></dd></dl>
<ul><li><a href="a.html">First steps</a></li><li><a href="b.html">Next steps</a></li></ul></div>
<div id="ft"><div class="nav">&laquo; <a href="usage.html">previous</a> | <a href="models.html">next</a> &raquo;</div>
</div></body></html>"""


def test_a_site_name_heading_and_link_bars_are_chrome_where_no_landmark_says_so(tmp_path: Path) -> None:
    doc = parse_one(write(tmp_path, "help.html", UNMARKED_PAGE))
    # The page's own title, not the site's name on every page.
    assert doc.title == "FAQ: Getting Help — Widgets 3.2 documentation"
    assert [b.text for b in doc.blocks] == [
        "FAQ: Getting Help",
        "Ask on the forum or the list.",
        # Links with words or brackets between them are text: a list after "See also", a type written in links.
        "Install, Run",
        "Return type",
        "Optional[Widget]",
        # A list of links is a list (an index page's contents).
        "First steps",
        "Next steps",
    ]


def _sphinx_build(root: Path, under: str = "") -> None:
    for rel in (
        "objects.inv", "searchindex.js", "index.html", "api.html", "patterns/cache.html", "genindex.html",
        "search.html", "py-modindex.html", "404.html", "_sources/api.rst.txt", "_static/basic.css",
        "_static/doctools.js", "_images/logo.png", "_modules/widgets.html",
    ):  # fmt: skip
        write(root, f"{under}{rel}", "<p>x</p>")


def test_a_sphinx_build_is_read_as_its_pages(tmp_path: Path) -> None:
    """Its page sources (every page again as reST), assets, general index, module index, search and 404 pages are
    the generator's, not content; its pages, in every folder, are."""
    _sphinx_build(tmp_path, "docs/html/")
    for rel in ("notes.md", "docs/readme.txt", "docs/genindex.html"):  # beside the build, not in it
        write(tmp_path, rel, "Notes.")
    root = tmp_path / "ada"
    assert [p.relative_to(root).as_posix() for p in content_files(root)] == [
        "docs/genindex.html", "docs/html/api.html", "docs/html/index.html", "docs/html/patterns/cache.html",
        "docs/readme.txt", "notes.md",
    ]  # fmt: skip


def test_a_build_at_the_creator_folders_top_and_a_folder_that_only_looks_like_one(tmp_path: Path) -> None:
    _sphinx_build(tmp_path)
    root = tmp_path / "ada"
    assert [p.relative_to(root).as_posix() for p in content_files(root)] == [
        "api.html", "index.html", "patterns/cache.html",
    ]  # fmt: skip
    # Without both marker files a folder is anyone's: a page called search.html or a `_static` folder is read.
    other = tmp_path / "other"
    for rel in ("objects.inv", "search.html", "_static/notes.md"):
        write(other, rel, "<p>x</p>")
    listed = [p.relative_to(other / "ada").as_posix() for p in content_files(other / "ada")]
    assert listed == ["_static/notes.md", "objects.inv", "search.html"]


def _listed(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in content_files(root)]


def test_an_mkdocs_build_is_read_as_its_pages(tmp_path: Path) -> None:
    """The shape of `mkdocs build` (its search plugin's index and the sitemap mark it): theme assets, search, fonts,
    the 404 page (navigation only) and the sitemaps are the generator's; pages in every folder are content."""
    for rel in (
        "index.html", "getting-started.html", "user-guide/cli.html", "404.html", "sitemap.xml", "sitemap.xml.gz",
        "search/search_index.json", "search/main.js", "css/base.css", "js/base.js", "fonts/fa.woff2",
        "img/favicon.ico", "assets/_mkdocstrings.css", "objects.inv", "messages.pot", "user-guide/shot.png",
    ):  # fmt: skip
        write(tmp_path, f"site/{rel}", "<main><p>x</p></main>")
    write(tmp_path, "drafts/notes.md", "Notes.")
    assert _listed(tmp_path / "ada") == [
        "drafts/notes.md", "site/getting-started.html", "site/index.html", "site/user-guide/cli.html",
    ]  # fmt: skip


def test_a_site_that_names_its_generator_is_read_without_listings(tmp_path: Path) -> None:
    """Docusaurus and Hugo name themselves in the home page: their tag, category and pagination listings (every
    post's excerpt again), feeds, sitemaps, search page and assets are left out."""
    home = '<html><head><meta name="generator" content="Docusaurus v3.5.2"></head><body><main>Home</main></body></html>'
    write(tmp_path, "web/index.html", home)
    for rel in (
        "404.html", "sitemap.xml", "docs/intro/index.html", "blog/first-post/index.html", "blog/tags/news/index.html",
        "blog/page/2/index.html", "blog/archive/index.html", "docs/tags/index.html", "search/index.html",
        "assets/js/main.3f2a.js", "assets/css/styles.css", "img/logo.svg",
    ):  # fmt: skip
        write(tmp_path, f"web/{rel}", "<main><p>x</p></main>")
    hugo = "<html><head><meta content='Hugo 0.123.7' name='generator'/></head><body><main>Home</main></body></html>"
    write(tmp_path, "blog/index.html", hugo)
    for rel in (
        "404.html", "sitemap.xml", "index.xml", "posts/bread/index.html", "posts/index.xml", "tags/bread/index.html",
        "categories/baking/index.html", "page/2/index.html", "css/main.css",
    ):  # fmt: skip
        write(tmp_path, f"blog/{rel}", "<main><p>x</p></main>")
    assert _listed(tmp_path / "ada") == [
        "blog/index.html", "blog/posts/bread/index.html",
        "web/blog/first-post/index.html", "web/docs/intro/index.html", "web/index.html",
    ]  # fmt: skip


def test_a_site_whose_generator_is_unknown_is_read_whole(tmp_path: Path) -> None:
    """Without markers or a generator we know, nothing is guessed: a `tags/` folder or a 404 page is the curator's
    own, and an unsupported file is reported, not hidden."""
    write(tmp_path, "index.html", '<html><head><meta name="generator" content="handmade"></head><main>Hi</main></html>')
    for rel in ("404.html", "sitemap.xml", "tags/index.html", "style.css"):
        write(tmp_path, rel, "<main><p>x</p></main>")
    assert _listed(tmp_path / "ada") == ["404.html", "index.html", "sitemap.xml", "style.css", "tags/index.html"]


def test_a_redirect_stub_yields_no_document(tmp_path: Path) -> None:
    """A moved page ("Redirecting...", with a refresh to its new place) holds nothing of its own; a page that
    refreshes but has its own text is read."""
    stub = (
        '<!doctype html><html><head><title>Redirecting...</title><link rel="canonical" href="../new.html">'
        '<meta http-equiv="refresh" content="0; url=../new.html"></head><body>Redirecting...</body></html>'
    )
    assert parse(write(tmp_path, "old.html", stub)).documents == []
    page = (
        '<html><head><meta http-equiv="Refresh" content="300; URL=live.html"></head><body><main>'
        + "<p>The scores update every five minutes; this page reloads itself to show them.</p>" * 4
        + "</main></body></html>"
    )
    assert "reloads itself" in parse_one(write(tmp_path, "live.html", page)).blocks[0].text
