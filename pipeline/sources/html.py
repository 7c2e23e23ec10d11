"""HTML pages (.html, .htm): the main text only, with headings, title and canonical URL."""

from __future__ import annotations

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


@dataclass(frozen=True, slots=True)
class Page:
    """What an HTML page says about itself, and its main text as blocks."""

    title: str | None
    url: str | None  # its canonical link
    published: str | None
    blocks: list[Block]


def parse_html(ctx: SourceContext) -> ParseResult:
    page = read_page(read_text(ctx))
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
    title = _title(soup)
    url = _canonical(soup)
    published = _published(soup)
    for tag in soup.find_all(_DROP):
        tag.decompose()
    for tag in soup.find_all(["header", "footer"]):
        # An article's own header holds its headline; site headers and every footer are chrome.
        if tag.name == "footer" or not tag.find_parent(["article", "main"]):
            tag.decompose()
    for tag in soup.find_all(hidden=True):
        tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.find("body") or soup
    blocks: list[Block] = []
    buffer: list[str] = []
    _walk(root, blocks, buffer)
    _flush(blocks, buffer)  # text outside any block element (a fragment of plain text)
    return Page(title=title, url=url, published=published, blocks=blocks)


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
