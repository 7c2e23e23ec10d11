"""Documentation builds copied in as published: which of a generated site's files are its content.

A curator often has a project's documentation as its generator wrote it (a Sphinx `html/` folder, as Debian's
`-doc` packages install them, an MkDocs `site/`, a Docusaurus or Hugo `public/`). Beside the pages, a build holds
files that are not content: the reST each page was built from (Sphinx's `_sources/*.rst.txt`, every page a second
time as plain text), stylesheets, scripts, fonts and search indexes (dozens of "unsupported file type" lines in an
ingest report), and pages generated from the others: Sphinx's general index (every name the site documents on one
page, which a question naming one function or option ranks above that function's own page), a 404 page (the site's
navigation and nothing else), tag, category and pagination listings (every post's excerpt again, under each of its
tags). Those are left out of a build's folder; its pages are read as any HTML page (html.py drops the chrome inside
them).

A folder is a build when it holds what its generator always writes there:

- Sphinx: `objects.inv` and `searchindex.js`.
- MkDocs: `search/search_index.json` (its search plugin, on by default) and `sitemap.xml`.
- Any generator that names itself in its home page (`<meta name="generator" content="Docusaurus v3">`: MkDocs,
  Docusaurus, Hugo, Jekyll, Hexo, VitePress, Gatsby, Eleventy): a folder with `index.html` and a `404.html` or a
  `sitemap.xml`, whose `index.html` says so.

Inside a build, web assets (stylesheets, scripts, fonts, images, maps, sitemaps, feeds, search indexes) are the
build's too, whatever folder they are in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.sources.common import read_confined


@dataclass(frozen=True, slots=True)
class Generator:
    name: str
    folders: frozenset[str]  # the build's top-level folders that are the generator's own
    pages: re.Pattern[str]  # the build's top-level files that are generated (index, search, 404 pages; markers)
    listings: re.Pattern[str] | None = None  # paths anywhere in the build that list other pages (tags, pagination)


_SITE_PAGES = r"404\.html|sitemap\.xml(?:\.gz)?|robots\.txt|CNAME|search\.html"
# Tag, category, archive and pagination listings, as Hugo, Jekyll, Hexo and Docusaurus write them.
_LISTINGS = re.compile(
    r"(?:^|/)(?:tags?|categories|category|archives?|authors)/|(?:^|/)page/\d+/|(?:^|/)page\d+/|^search/index\.html$"
)

SPHINX = Generator(
    "Sphinx",
    frozenset({"_sources", "_static", "_images", "_downloads", "_modules"}),
    re.compile(r"^(?:genindex(?:-[^/]+)?|search|404|[a-z0-9_]*-?modindex)\.html$|^objects\.inv$|^searchindex\.js$"),
)
MKDOCS = Generator(
    "MkDocs",
    frozenset({"search", "css", "js", "fonts", "webfonts", "assets", "img"}),
    re.compile(rf"^(?:{_SITE_PAGES}|objects\.inv)$"),
)
_STATIC_SITE = re.compile(rf"^(?:{_SITE_PAGES}|index\.xml|feed\.xml|atom\.xml|rss\.xml)$")
_BY_NAME = {
    "mkdocs": MKDOCS,
    "docusaurus": Generator("Docusaurus", frozenset({"assets", "img"}), _STATIC_SITE, _LISTINGS),
    "hugo": Generator("Hugo", frozenset({"css", "js", "fonts", "images"}), _STATIC_SITE, _LISTINGS),
    "jekyll": Generator("Jekyll", frozenset({"assets", "css", "js"}), _STATIC_SITE, _LISTINGS),
    "hexo": Generator("Hexo", frozenset({"css", "js", "fonts", "images"}), _STATIC_SITE, _LISTINGS),
    "vitepress": Generator("VitePress", frozenset({"assets"}), _STATIC_SITE),
    "gatsby": Generator("Gatsby", frozenset({"static", "page-data"}), _STATIC_SITE),
    "eleventy": Generator("Eleventy", frozenset({"css", "js", "assets"}), _STATIC_SITE, _LISTINGS),
}
_SPHINX_MARKERS = ("objects.inv", "searchindex.js")
_MKDOCS_MARKERS = ("search/search_index.json", "sitemap.xml")
# Files no page is made of: a build's stylesheets, scripts, fonts, images, source maps, sitemaps, feeds, indexes.
_ASSETS = frozenset(
    ".css .js .mjs .map .woff .woff2 .ttf .otf .eot .ico .png .jpg .jpeg .gif .svg .webp .avif .json .xml .gz .inv "
    ".pot .mo .webmanifest".split()
)
_GENERATOR_META = re.compile(
    r"<meta\b(?=[^>]*\bname\s*=\s*[\"']?generator\b)[^>]*\bcontent\s*=\s*[\"']([^\"'>]*)", re.IGNORECASE
)
_HOME_PAGE_BYTES = 32_768


def generated(relative: Path, builds: dict[Path, Generator]) -> bool:
    """Whether `relative` (a path under a creator folder) is a generated file of a build rooted at one of `builds`
    (folders relative to the same creator folder, from `build_roots`)."""
    for root, generator in builds.items():
        if root not in relative.parents:  # a build at the creator folder's top is Path("."), every path's parent
            continue
        inner = relative.parts[len(root.parts) :]
        if not inner:
            continue
        if inner[0] in generator.folders or (len(inner) == 1 and generator.pages.match(inner[0])):
            return True
        if relative.suffix.lower() in _ASSETS:
            return True
        if generator.listings is not None and generator.listings.search("/".join(inner)):
            return True
    return False


def build_roots(creator_root: Path, files: list[Path]) -> dict[Path, Generator]:
    """The folders among `files`' (relative to `creator_root`) that are a documentation build's root, and the
    generator that wrote each."""
    present = {file.relative_to(creator_root).as_posix() for file in files}
    folders = {Path(p).parent for p in present}
    builds: dict[Path, Generator] = {}
    for folder in sorted(folders, key=lambda f: len(f.parts)):
        prefix = "" if folder == Path(".") else f"{folder.as_posix()}/"
        if all(f"{prefix}{marker}" in present for marker in _SPHINX_MARKERS):
            builds[folder] = SPHINX
        elif all(f"{prefix}{marker}" in present for marker in _MKDOCS_MARKERS):
            builds[folder] = MKDOCS
        elif f"{prefix}index.html" in present and (f"{prefix}404.html" in present or f"{prefix}sitemap.xml" in present):
            generator = _named_generator(creator_root / folder / "index.html", creator_root)
            if generator is not None:
                builds[folder] = generator
    return builds


def _named_generator(home: Path, creator_root: Path) -> Generator | None:
    """The generator a site's home page names in its `<meta name="generator">`, when it is one we know."""
    try:
        head = read_confined(home, creator_root)[:_HOME_PAGE_BYTES].decode("utf-8", "replace")
    except OSError:
        return None  # unreadable or outside the folder: its own parse reports it
    match = _GENERATOR_META.search(head)
    if match is None:
        return None
    name = match.group(1).strip().lower()
    return next((generator for key, generator in _BY_NAME.items() if name.startswith(key)), None)
