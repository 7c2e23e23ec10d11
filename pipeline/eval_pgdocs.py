"""The PostgreSQL manual as an evaluation corpus: the Debian package's HTML, one creator per part of the manual.

`scripts/build-eval-pgdocs` installs `postgresql-doc-15` when missing and runs this module; the questions and
judgements over the corpus are committed under `examples/eval/pgdocs/`. The corpus is a content folder
(a folder of creator folders, as `lorechat ingest` and `lorechat eval --content` take), rebuilt
byte-for-byte the same from the same package version:

- a *section* is one page of the manual: a numbered section (`sect1`) or a reference page (`refentry`);
- its creator is the part of the manual it sits in (Tutorial, The SQL Language, Server Administration,
  Client Interfaces, Server Programming, Reference, Internals), found by following each page's "Up" link;
  the appendixes are left out (release notes would dominate any query that names a version);
- sections over MAX_WORDS words are left out, so the index builds in well under a minute on two cores;
- each page keeps its own content only (navigation header and footer and the table of contents dropped),
  written as `<creator>/<page>.html` with its title stripped of the section number. Document ids are
  therefore `<creator>/<page>.html`, e.g. `sql-language/ddl-constraints.html`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from bs4 import BeautifulSoup, Tag

from pipeline.eval_corpus import Section, write_corpus

DEFAULT_HTML = Path("/usr/share/doc/postgresql-doc-15/html")
DEBIAN_PACKAGE = "postgresql-doc-15"
# Sections longer than this (words of their own text) are left out: the few very long pages (function
# tables, catalogs) would double the build time and add little a question can pin down.
MAX_WORDS = 800
# Part page -> (creator slug, creator name). Creators act as tenants: a creator-scoped question must be
# answered from its own part of the manual.
PARTS: dict[str, tuple[str, str]] = {
    "tutorial.html": ("tutorial", "Tutorial"),
    "sql.html": ("sql-language", "The SQL Language"),
    "admin.html": ("server-administration", "Server Administration"),
    "client-interfaces.html": ("client-interfaces", "Client Interfaces"),
    "server-programming.html": ("server-programming", "Server Programming"),
    "reference.html": ("reference", "Reference"),
    "internals.html": ("internals", "Internals"),
}
_SECTION_KINDS = ("sect1", "refentry")
_UP_LINK = re.compile(r'<a accesskey="u" href="([^"#]+)"')
_NUMBER = re.compile(r"^(?:[A-Z]\.)?[0-9.]+\s+")


def part_of(page: str, up: dict[str, str | None]) -> str | None:
    """The part page above `page` (following "Up" links), or None for pages outside the parts."""
    seen: set[str] = set()
    current: str | None = page
    while current is not None and current not in PARTS and current not in seen:
        seen.add(current)
        current = up.get(current)
    return current if current in PARTS else None


def read_sections(html_dir: Path, *, max_words: int = MAX_WORDS) -> Iterator[Section]:
    pages = sorted(p for p in html_dir.glob("*.html"))
    if not pages:
        raise SystemExit(f"{html_dir}: no HTML pages (is {DEBIAN_PACKAGE} installed?)")
    raw = {p.name: p.read_text(encoding="utf-8") for p in pages}
    up: dict[str, str | None] = {}
    for name, text in raw.items():
        match = _UP_LINK.search(text)
        up[name] = match.group(1) if match else None
    for name, text in raw.items():
        part = part_of(name, up)
        if part is None:
            continue
        soup = BeautifulSoup(text, "html.parser")
        body = soup.body
        if body is None:
            continue
        main = next((c for c in body.find_all("div", recursive=False) if _kind(c) in _SECTION_KINDS), None)
        if main is None:
            continue
        for chrome in main.find_all("div", class_=["toc", "navheader", "navfooter"]):
            chrome.decompose()
        words = len(main.get_text(" ").split())
        if words > max_words:
            continue
        title_tag = soup.title
        title = " ".join((title_tag.get_text() if title_tag else name).split())
        yield Section(page=name, creator=PARTS[part][0], title=_NUMBER.sub("", title), body=str(main), words=words)


def _kind(tag: Tag) -> str:
    classes = tag.get_attribute_list("class")
    return str(classes[0]) if classes and classes[0] else ""


def build(html_dir: Path, out: Path, *, max_words: int = MAX_WORDS) -> dict[str, int]:
    """Write the content folder under `out` (replacing it); returns sections per creator."""
    creators = {
        slug: (name, f"Part '{name}' of the PostgreSQL 15 manual (Debian {DEBIAN_PACKAGE}).")
        for slug, name in PARTS.values()
    }
    return write_corpus(read_sections(html_dir, max_words=max_words), out, creators)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--html", type=Path, default=DEFAULT_HTML, help="The manual's HTML folder.")
    parser.add_argument("--out", type=Path, required=True, help="Content folder to (re)build.")
    parser.add_argument("--max-words", type=int, default=MAX_WORDS, help="Leave out longer sections.")
    args = parser.parse_args(argv)
    counts = build(args.html, args.out, max_words=args.max_words)
    total = sum(counts.values())
    print(f"{total} sections in {len(counts)} creators under {args.out}: {counts}", file=sys.stderr)


if __name__ == "__main__":
    main()
