"""Three more evaluation corpora from Debian documentation packages that nobody on the team wrote (issue 37).

`scripts/build-eval-debdocs [SET...]` installs each set's Debian package when missing and runs this module; the
questions, judgements and answer sets over each corpus are committed under `examples/eval/<set>/`, the corpus
itself is git-ignored (`examples/eval/<set>/content`). Like `pipeline/eval_pgdocs.py`, each corpus is a content
folder (creator folders, as `lorechat ingest` and `lorechat eval --content` take) rebuilt byte-for-byte the same
from the same package version, one HTML page per *section*, with only the section's own content (navigation,
tables of contents and boilerplate dropped) and its title without the section number:

- `gitdocs`, a **command reference** (`git-doc`, git 2.39): the manual pages of git's main porcelain commands
  (creator `porcelain`), its guides (`guides`) and its file and convention pages (`interfaces`), as git's own
  `cmds-*.txt` lists sort them; the ancillary commands (git-config, git-blame, …) and pages over GIT_MAX_WORDS
  words (git-log, -diff, -rebase, -commit, -checkout and the like) are left out: a handful of huge pages would
  double the build. One section per top-level part of a page (the synopsis with the description, options,
  examples, configuration, …; SEE ALSO and GIT boilerplate dropped), titled with the page's NAME line and the part
  ("git-stash - Stash the changes …: Options"). Answers name flags, options, configuration variables and commands.
- `handbook`, a **user guide** in its authors' voice (`debian-handbook`, The Debian Administrator's Handbook by
  Raphaël Hertzog and Roland Mas, English): chapters 1 (The Debian Project), 5 (Packaging System), 6 (APT) and 7
  (Solving Problems), one creator each. The other chapters (installation, configuration, services, security, …)
  are left out: questions about them sound close to the corpus and are the set's unanswerable ones.
- `debref`, a **long-form reference** in one author's voice (`debian-reference-en`, the Debian Reference by Osamu
  Aoki): chapters 1, 3, 4, 5, 6, 8, 10, 11 and 12 (DEBREF_CHAPTERS), one creator each.

In the two books a section is a second-level section ("5.1.1. The hostname resolution", with its subsections),
or a chapter's or first-level section's own introduction when it has MIN_INTRO_WORDS words. Each corpus stays a
few hundred sections (370-580 chunks), so it indexes in well under a minute on two cores.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bs4 import BeautifulSoup, Tag

from pipeline.eval_corpus import Section, write_corpus


@dataclass(frozen=True, slots=True)
class DocSet:
    name: str
    package: str  # the Debian package the corpus is built from
    source: Path  # where the package installs the HTML
    marker: str  # a file under `source` that exists once the package is installed
    kind: str
    creators: dict[str, str]  # slug -> display name, in order
    bio: str  # the creators' bio, with {name} for the creator's display name
    read: Callable[[Path], Iterator[Section]]

    def installed(self) -> bool:
        return (self.source / self.marker).is_file()


def _soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def _words(tag: Tag) -> int:
    return len(tag.get_text(" ").split())


def _classes(tag: Tag) -> list[str]:
    return [str(c) for c in tag.get_attribute_list("class") if c]


_SECTION_NUMBER = re.compile(
    r"^(?:(?:Chapter|Appendix)\s+[0-9A-Z]+\.?|[A-Z](?:\.[0-9]+)+\.?|[0-9]+(?:\.[0-9]+)*\.?)\s+"
)


def _title(text: str) -> str:
    """'6.3. The apt-cache Command' -> 'The apt-cache Command'; 'Chapter 6. APT' -> 'APT'."""
    return _SECTION_NUMBER.sub("", " ".join(text.split()))


# --- gitdocs: git's manual pages -------------------------------------------------------------------------------

GIT_HTML = Path("/usr/share/doc/git-doc")
# Pages with more words than this are left out (see the module docstring).
GIT_MAX_WORDS = 2600
# git's own command categories (Documentation/cmds-*.txt) -> creator.
_GIT_CATEGORIES = {
    "mainporcelain": "porcelain",
    "guide": "guides",
    "userinterfaces": "interfaces",
}
_GIT_LINK = re.compile(r"^linkgit:([\w.-]+)\[\d\]::", re.MULTILINE)
_GIT_BOILERPLATE = {"SEE ALSO", "GIT", "AUTHOR", "DOCUMENTATION"}


def read_gitdocs(source: Path, *, max_words: int = GIT_MAX_WORDS) -> Iterator[Section]:
    pages: dict[str, str] = {}
    for category, creator in _GIT_CATEGORIES.items():
        listing = source / f"cmds-{category}.txt"
        if not listing.is_file():
            raise SystemExit(f"{listing}: missing (is git-doc installed?)")
        for match in _GIT_LINK.finditer(listing.read_text(encoding="utf-8")):
            pages.setdefault(match.group(1), creator)
    for name, creator in sorted(pages.items()):
        path = source / f"{name}.html"
        if not path.is_file():
            continue
        soup = _soup(path)
        header, content = soup.find("div", id="header"), soup.find("div", id="content")
        if not isinstance(header, Tag) or not isinstance(content, Tag):
            continue
        purpose = header.find("div", class_="sectionbody")
        summary = " ".join(purpose.get_text(" ").split()) if isinstance(purpose, Tag) else name
        parts: list[tuple[str, list[Tag]]] = []
        for sect in content.find_all("div", class_="sect1", recursive=False):
            heading_tag = sect.find("h2")
            heading = " ".join(heading_tag.get_text(" ").split()) if isinstance(heading_tag, Tag) else ""
            if heading.upper() in _GIT_BOILERPLATE:
                continue
            if parts and parts[-1][0].upper() == "SYNOPSIS":
                parts[-1] = (heading, [*parts[-1][1], sect])  # the synopsis opens the description
            else:
                parts.append((heading, [sect]))
        if sum(_words(tag) for _, tags in parts for tag in tags) > max_words:
            continue
        taken: set[str] = set()
        for heading, tags in parts:
            label = heading.capitalize() if heading.isupper() else heading
            yield Section(
                page=_page_name(f"{name}.{heading}", taken),
                creator=creator,
                title=f"{summary}: {label}",
                body="".join(str(tag) for tag in tags),
                words=sum(_words(tag) for tag in tags),
            )


# --- handbook: The Debian Administrator's Handbook -------------------------------------------------------------

HANDBOOK_HTML = Path("/usr/share/doc/debian-handbook/html/en-US")
# Chapter page -> creator slug: chapters 1, 5, 6 and 7; the others, the appendixes and the front matter are left out.
_HANDBOOK_CHAPTERS = {
    "the-debian-project.html": "debian-project",
    "packaging-system.html": "packaging-system",
    "apt.html": "apt",
    "solving-problems.html": "solving-problems",
}
_UP = re.compile(r'<link rel="up" href="([^"#]+)"')
# A chapter's or first-level section's own introduction becomes a section only with at least this many words.
MIN_INTRO_WORDS = 40


def _child_sections(tag: Tag) -> list[Tag]:
    return [d for d in tag.find_all("div", recursive=False) if "section" in _classes(d)]


def _heading(tag: Tag) -> tuple[str, str]:
    """(anchor id, title) of a DocBook section or chapter."""
    heading = tag.find(["h1", "h2", "h3", "h4"], class_="title")
    if not isinstance(heading, Tag):
        return "", ""
    anchor = heading.find("a", id=True)
    return (str(anchor["id"]) if isinstance(anchor, Tag) else ""), _title(heading.get_text())


def _page_name(anchor: str, taken: set[str]) -> str:
    stem = re.sub(r"[^a-z0-9.]+", "-", anchor.lower()).strip("-.") or "section"
    name, n = f"{stem}.html", 2
    while name in taken:
        name, n = f"{stem}-{n}.html", n + 1
    taken.add(name)
    return name


def _intro(tag: Tag) -> Tag:
    """`tag` without its subsections (and table of contents): a section's own introduction."""
    own = copy.copy(tag)
    for child in _child_sections(own):
        child.decompose()
    for toc in own.find_all("div", class_="toc"):
        toc.decompose()
    return own


def _docbook_units(top: Tag, *, taken: set[str], creator: str) -> Iterator[Section]:
    """A chapter (or first-level section) as sections: its own introduction when it has MIN_INTRO_WORDS words
    then each first-level section's introduction and each second-level section whole (with its
    subsections). A first-level section `top` is split the same way, one level down."""
    units: list[tuple[Tag, bool]] = []
    if "chapter" in _classes(top) or "appendix" in _classes(top):
        units.append((top, True))
        for sect1 in _child_sections(top):
            children = _child_sections(sect1)
            units.append((sect1, bool(children)))
            units.extend((sect2, False) for sect2 in children)
    else:
        children = _child_sections(top)
        units.append((top, bool(children)))
        units.extend((sect2, False) for sect2 in children)
    for tag, intro_only in units:
        anchor, title = _heading(tag)
        if not anchor or anchor.startswith("id-"):
            anchor = title  # DocBook's generated ids ("id-1.9.16.6") say nothing: name the file after the title
        own = _intro(tag) if intro_only else tag
        words = _words(own)
        if intro_only and words - len(title.split()) < MIN_INTRO_WORDS:
            continue
        yield Section(page=_page_name(anchor, taken), creator=creator, title=title, body=str(own), words=words)


def read_handbook(source: Path) -> Iterator[Section]:
    taken: set[str] = set()
    for path in sorted(source.glob("*.html")):
        text = path.read_text(encoding="utf-8")
        chapter = path.name if path.name in _HANDBOOK_CHAPTERS else None
        if chapter is None:
            up = _UP.search(text)
            chapter = up.group(1) if up and up.group(1) in _HANDBOOK_CHAPTERS else None
        if chapter is None:
            continue
        soup = BeautifulSoup(text, "html.parser")
        body = soup.body
        if body is None:
            continue
        main = next(
            (d for d in body.find_all("div", recursive=False) if set(_classes(d)) & {"section", "chapter", "appendix"}),
            None,
        )
        if main is None:
            continue
        for chrome in main.find_all(["div", "ul"], class_=["toc", "docnav"]):
            chrome.decompose()
        for anchor in main.find_all("a", class_="indexterm"):
            anchor.decompose()
        yield from _docbook_units(main, taken=taken, creator=_HANDBOOK_CHAPTERS[chapter])


# --- debref: the Debian Reference ------------------------------------------------------------------------------

DEBREF_HTML = Path("/usr/share/debian-reference")
# Chapter number -> creator slug. Chapters 2 (package management: the handbook set covers it), 7 (GUI) and 9
# (system tips, the longest) are left out, so the corpus indexes in well under a minute on two cores.
DEBREF_CHAPTERS = {
    1: "gnu-linux-tutorials",
    3: "system-initialization",
    4: "authentication",
    5: "network-setup",
    6: "network-applications",
    8: "i18n-l10n",
    10: "data-management",
    11: "data-conversion",
    12: "programming",
}


def read_debref(source: Path) -> Iterator[Section]:
    taken: set[str] = set()
    for number, creator in DEBREF_CHAPTERS.items():
        path = source / f"ch{number:02d}.en.html"
        if not path.is_file():
            raise SystemExit(f"{path}: missing (is debian-reference-en installed?)")
        chapter = _soup(path).find("div", class_="chapter")
        if not isinstance(chapter, Tag):
            continue
        yield from _docbook_units(chapter, taken=taken, creator=creator)


SETS: dict[str, DocSet] = {
    "gitdocs": DocSet(
        name="gitdocs",
        package="git-doc",
        source=GIT_HTML,
        marker="git-stash.html",
        kind="command reference",
        creators={"porcelain": "Git main commands", "guides": "Git guides", "interfaces": "Git files and conventions"},
        bio="{name}: manual pages from git's documentation (Debian git-doc).",
        read=read_gitdocs,
    ),
    "handbook": DocSet(
        name="handbook",
        package="debian-handbook",
        source=HANDBOOK_HTML,
        marker="sect.apt-get.html",
        kind="user guide",
        creators={
            "debian-project": "The Debian Project",
            "packaging-system": "Packaging System: Tools and Fundamental Principles",
            "apt": "Maintenance and Updates: The APT Tools",
            "solving-problems": "Solving Problems and Finding Relevant Information",
        },
        bio="'{name}', from The Debian Administrator's Handbook by Raphaël Hertzog and Roland Mas (Debian "
        "debian-handbook).",
        read=read_handbook,
    ),
    "debref": DocSet(
        name="debref",
        package="debian-reference-en",
        source=DEBREF_HTML,
        marker="ch01.en.html",
        kind="long-form reference",
        creators={
            "gnu-linux-tutorials": "GNU/Linux tutorials",
            "system-initialization": "The system initialization",
            "authentication": "Authentication and access controls",
            "network-setup": "Network setup",
            "network-applications": "Network applications",
            "i18n-l10n": "I18N and L10N",
            "data-management": "Data management",
            "data-conversion": "Data conversion",
            "programming": "Programming",
        },
        bio="Chapter '{name}' of the Debian Reference by Osamu Aoki (Debian debian-reference-en).",
        read=read_debref,
    ),
}


def build(doc_set: DocSet, out: Path, *, source: Path | None = None) -> dict[str, int]:
    """Write the set's content folder under `out` (replacing it); returns sections per creator."""
    folder_source = source or doc_set.source
    if not folder_source.is_dir():
        raise SystemExit(f"{folder_source}: missing (is {doc_set.package} installed?)")
    creators = {slug: (name, doc_set.bio.format(name=name)) for slug, name in doc_set.creators.items()}
    return write_corpus(doc_set.read(folder_source), out, creators)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("set", choices=sorted(SETS), help="Which corpus to build.")
    parser.add_argument("--out", type=Path, required=True, help="Content folder to (re)build.")
    parser.add_argument("--source", type=Path, default=None, help="The package's HTML folder (default: installed).")
    args = parser.parse_args(argv)
    counts = build(SETS[args.set], args.out, source=args.source)
    total = sum(counts.values())
    print(f"{args.set}: {total} sections in {len(counts)} creators under {args.out}: {counts}", file=sys.stderr)


if __name__ == "__main__":
    main()
