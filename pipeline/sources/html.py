"""HTML pages (.html, .htm): the main text only, with headings, title and canonical URL.

Documentation as published carries its site's chrome in every page: Sphinx's related-links bar and sidebar (the
page's whole table of contents, a search box), permalink marks after every heading and signature ("API ¶",
"aborter¶"), a copyright footer. Landmarks say what is chrome wherever a site marks them (ARIA roles, as Sphinx,
MkDocs and Docusaurus do), and a permalink is a link whose text is only a mark. Where a theme marks nothing (Django's
and SQLAlchemy's documentation), a row of links with only separators between them ("« previous | up | next »") is a
navigation bar, and a first h1 that only links home is the site's name, not the page's title.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import PreformattedString

from backend.stages import Block, Document
from pipeline.sources.common import (
    ParseResult,
    SourceContext,
    clean_text,
    collapse,
    read_text,
    require_blocks,
    title_from_name,
)

# Page chrome and non-content: never part of what a visitor asks about.
_DROP = ("nav", "aside", "script", "style", "noscript", "form", "template", "svg", "iframe", "button", "dialog")
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCK = {
    "address", "article", "blockquote", "body", "dd", "details", "div", "dl", "dt", "fieldset", "figcaption",
    "figure", "hr", "li", "main", "ol", "p", "section", "summary", "table", "tbody", "td", "tfoot", "th",
    "thead", "tr", "ul", "caption", "header", "footer", "br",
}  # fmt: skip
# ARIA landmarks that are never the page's own content: site navigation, search, site header and footer, sidebars.
_CHROME_ROLES = {"navigation", "search", "banner", "contentinfo", "complementary", "menu", "menubar", "toolbar"}
# A link to its own heading or entry: only a mark ("¶" in Sphinx, "#" in MkDocs and GitHub, "§", a link emoji, or
# nothing but an icon), or classed as one by the generators that mark them.
_PERMALINK_TEXT = {"", "¶", "#", "§", "🔗", "link", "permalink"}
_PERMALINK_CLASSES = {"headerlink", "anchor", "anchorjs-link", "hash-link", "header-anchor", "permalink"}
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Page:
    """What an HTML page says about itself, and its main text as blocks."""

    title: str | None
    url: str | None  # its canonical link
    published: str | None
    blocks: list[Block]
    redirect: str | None = None  # where a `<meta http-equiv="refresh">` sends the reader at once


# A page that only sends its reader elsewhere ("Redirecting..."; MkDocs' redirects plugin, moved pages on any static
# site) holds no more text than this.
_STUB_CHARACTERS = 200
_REFRESH = re.compile(r"^\s*0*\s*[;,]\s*url\s*=\s*['\"]?([^'\"\s]+)", re.IGNORECASE)


def parse_html(ctx: SourceContext) -> ParseResult:
    page = read_page(read_text(ctx))
    if page.redirect and sum(len(block.text) for block in page.blocks) <= _STUB_CHARACTERS:
        return ParseResult()  # a redirect stub: its content is the page it sends to, read from that file
    title = page.title or next((b.text for b in page.blocks if b.kind == "heading"), None) or title_from_name(ctx.path)
    document = Document(
        kind="page",
        creator=ctx.creator,
        document_id=ctx.document_id,
        source=ctx.source,
        title=title,
        blocks=require_blocks(ctx, page.blocks),
        url=page.url,
        published=page.published,
    )
    return ParseResult(documents=[document])


def read_page(text: str) -> Page:
    """An HTML page (or fragment, such as a feed entry's content) without its chrome: navigation, scripts, forms,
    site headers, footers and hidden elements are dropped; headings, paragraphs and code are kept."""
    with warnings.catch_warnings():
        # bs4 warns when a page looks like a URL or a file name; the text is still parsed.
        warnings.simplefilter("ignore")
        soup = BeautifulSoup(text, "html.parser")
    for tag in soup.find_all(_is_site_name):
        tag.decompose()
    title = _title(soup)
    url = _canonical(soup)
    published = _published(soup)
    redirect = _redirect(soup)
    for tag in soup.find_all(_DROP):
        tag.decompose()
    for tag in soup.find_all(_is_chrome):
        tag.decompose()
    for tag in soup.find_all(_is_link_bar):
        tag.decompose()
    for tag in soup.find_all(["header", "footer"]):
        # An article's own header holds its headline; site headers and every footer are chrome.
        if tag.name == "footer" or not tag.find_parent(["article", "main"]):
            tag.decompose()
    for tag in soup.find_all("a"):
        if _is_permalink(tag):
            tag.decompose()
    main = soup.find("main") or soup.find(_is_main)
    root = main or soup.find("article") or soup.find("body") or soup
    blocks: list[Block] = []
    buffer: list[str] = []
    try:
        _walk(root, blocks, buffer)
        _flush(blocks, buffer)  # text outside any block element (a fragment of plain text)
    except RecursionError:
        # Elements nested thousands deep (a damaged or hostile page): its text, one block a line, rather than nothing.
        blocks = [Block(text=line) for line in (collapse(part) for part in root.get_text("\n").split("\n")) if line]
    return Page(title=title, url=url, published=published, blocks=blocks, redirect=redirect)


def _is_chrome(tag: Tag) -> bool:
    """Hidden (the `hidden` attribute, `aria-hidden`, an inline style hiding it), a landmark that is not the page's
    content (`role="navigation"` and the like), or a pre-HTML5 footer (`<div class="footer">`, Sphinx's copyright
    line)."""
    if tag.has_attr("hidden") or str(tag.get("aria-hidden", "")).lower() == "true":
        return True
    if _HIDDEN_STYLE.search(str(tag.get("style", ""))):
        return True
    if str(tag.get("role", "")).lower() in _CHROME_ROLES:
        return True
    return "footer" in tag.get_attribute_list("class") or tag.get("id") == "footer"


def _is_site_name(tag: Tag) -> bool:
    """A first-level heading that is only a link to another page, with the page's own h1 after it: the site's name
    over every page (Django's and SQLAlchemy's documentation: "<h1><a href="../index.html">Django 3.2
    documentation</a></h1>"), which would otherwise title every page the same."""
    if tag.name != "h1":
        return False
    links = tag.find_all("a", href=True)
    if len(links) != 1 or str(links[0]["href"]).startswith("#"):
        return False
    if collapse(links[0].get_text(" ")) != collapse(tag.get_text(" ")):
        return False
    return tag.find_next("h1") is not None


# What stands between the links of a bar: separators and arrows ("« previous | up | next »", "Home | Index"), at least
# one of them a bar's own (a type written in links, "Optional[Option]", or a list after "See also:" is content).
_BAR_SEPARATORS = re.compile(r"^[\s|·•«»‹›→←]*[|·•«»‹›→←][\s|·•«»‹›→←]*$")


# What a bar never holds: headings, code, tables, lists, images.
_BAR_CONTENT = ["h1", "h2", "h3", "h4", "h5", "h6", "pre", "table", "ul", "ol", "dl", "img"]


def _is_content(tag: Tag) -> bool:
    """The page's own content: `<main>`, `<article>` or the main landmark."""
    return tag.name in ("main", "article") or _is_main(tag)


def _is_link_bar(tag: Tag) -> bool:
    """A row of links with nothing but separators between them, outside the page's content (a site's navigation
    bar where no landmark marks it: Django's "Home | Table of contents | Index | Modules" and "« previous | up |
    next »"). A list of links (a table of contents on an index page) is a list, and stays."""
    # Its ancestors first: a walk up is shorter than a scan of its descendants, and most tags sit in the content.
    if tag.name not in ("div", "p") or tag.find_parent(_is_content) or tag.find(_BAR_CONTENT):
        return False
    links = tag.find_all("a")
    if len(links) < 2:
        return False
    between = "".join(str(text) for text in tag.find_all(string=True) if not text.find_parent("a"))
    return _BAR_SEPARATORS.match(between) is not None


def _is_main(tag: Tag) -> bool:
    return str(tag.get("role", "")).lower() == "main"


def _is_permalink(tag: Tag) -> bool:
    """A link to the page's own anchor whose text is only a mark ("¶"), or classed as a permalink."""
    href = str(tag.get("href", ""))
    if not href.startswith("#"):
        return False
    if _PERMALINK_CLASSES.intersection(str(c) for c in tag.get_attribute_list("class") if c):
        return True
    return collapse(tag.get_text(" ")).strip("\u200b").lower() in _PERMALINK_TEXT


def _title(soup: BeautifulSoup) -> str | None:
    texts = [collapse(tag.get_text(" ")) if isinstance(tag, Tag) else "" for tag in (soup.title, soup.h1)]
    title, h1 = texts
    # "<h1> | Site name" in <title>: the h1 alone is the cleaner title.
    if title and h1 and h1 in title:
        return h1
    return title or h1 or None


def _canonical(soup: BeautifulSoup) -> str | None:
    for link in soup.find_all("link", href=True):
        rel: object = link.get("rel") or []
        rels = rel if isinstance(rel, list) else str(rel).split()
        if "canonical" in (r.lower() for r in rels):
            href = collapse(str(link["href"]))
            return href or None
    return None


def _redirect(soup: BeautifulSoup) -> str | None:
    for meta in soup.find_all("meta", attrs={"http-equiv": True}):
        if str(meta.get("http-equiv", "")).lower() == "refresh":
            match = _REFRESH.match(str(meta.get("content", "")))
            if match:
                return match.group(1)
    return None


def _published(soup: BeautifulSoup) -> str | None:
    meta = soup.find("meta", attrs={"property": "article:published_time"}) or soup.find("meta", attrs={"name": "date"})
    if isinstance(meta, Tag) and meta.get("content"):
        return collapse(str(meta["content"])) or None
    return None


def _walk(node: Tag, blocks: list[Block], buffer: list[str]) -> None:
    """Inline text gathers in `buffer`; every block-level boundary flushes it as one paragraph."""
    for child in node.children:
        if isinstance(child, PreformattedString):  # comments, doctype, CDATA
            continue
        if isinstance(child, NavigableString):
            buffer.append(str(child))
            continue
        if not isinstance(child, Tag):
            continue
        name = child.name.lower()
        if name in _HEADINGS:
            _flush(blocks, buffer)
            heading = collapse(child.get_text(" "))
            if heading:
                blocks.append(Block(text=heading, kind="heading", level=int(name[1])))
        elif name == "pre":
            _flush(blocks, buffer)
            code = clean_text(child.get_text()).strip("\n")
            if code.strip():
                blocks.append(Block(text=code))
        elif name == "tr":
            # A table row is one line, its cells in order ("valgrind | V:6, I:38 | memory debugger and profiler"):
            # read cell by cell, a row's name and its values became unrelated paragraphs, and neither retrieval nor
            # an answer could tell which value belongs to which row.
            _flush(blocks, buffer)
            cells = [_cell_text(cell) for cell in child.find_all(["td", "th"], recursive=False)]
            row = " | ".join(cell for cell in cells if cell)
            if row:
                blocks.append(Block(text=row))
        elif name in _BLOCK:
            _flush(blocks, buffer)
            _walk(child, blocks, buffer)
            _flush(blocks, buffer)
        else:
            _walk(child, blocks, buffer)


def _cell_text(cell: Tag) -> str:
    """A table cell's text as the page reads it (inline elements joined as written, its paragraphs by a space)."""
    inner: list[Block] = []
    buffer: list[str] = []
    _walk(cell, inner, buffer)
    _flush(inner, buffer)
    return " ".join(block.text for block in inner)


def _flush(blocks: list[Block], buffer: list[str]) -> None:
    text = collapse("".join(buffer))
    buffer.clear()
    if text:
        blocks.append(Block(text=text))
