"""Documentation sites as their generator published them, as evaluation corpora: a project's Sphinx HTML build,
copied whole from its Debian documentation package, chrome, page sources (`_sources/`), static assets, general index
and search page included, into one creator folder. Two sites: the Flask documentation (`python-flask-doc`, Flask 2.2,
creator `flask`) and the Click documentation (`python-click-doc`, Click 8.1, creator `click`), both BSD licence.

The other sets' corpora are sections cut out of their manuals with the navigation dropped by the builder; these are
what a curator copies in from a project's `docs/_build/html` or `/usr/share/doc/*/html`, so they measure what ingest
makes of a site as published: the page chrome (`pipeline/sources/html.py`) and a build's generated files
(`pipeline/sources/site_builds.py`). Their questions (`examples/eval/flaskdocs/`, `examples/eval/clickdocs/`) judge
the pages; the build's own copies of them (the `_sources/*.rst.txt` beside each page, the general index listing every
name) are not answers.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class PublishedSite:
    """One Debian package's Sphinx build: where it is installed and the creator folder it is copied into."""

    package: str  # the Debian documentation package
    html: Path  # its installed build
    creator: str  # the creator slug: pages are `<creator>/<page>.html`
    creator_yaml: str  # the creator folder's `creator.yaml`

    def installed(self) -> bool:
        return (self.html / "objects.inv").is_file()


FLASK = PublishedSite(
    package="python-flask-doc",
    html=Path("/usr/share/doc/python-flask-doc/html"),
    creator="flask",
    creator_yaml='name: "Flask"\nbio: "The Flask 2.2 documentation as Sphinx built it (Debian python-flask-doc)."\n',
)
CLICK = PublishedSite(
    package="python-click-doc",
    html=Path("/usr/share/doc/python-click-doc/html"),
    creator="click",
    creator_yaml='name: "Click"\nbio: "The Click 8.1 documentation as Sphinx built it (Debian python-click-doc)."\n',
)

SITES: dict[str, PublishedSite] = {"flaskdocs": FLASK, "clickdocs": CLICK}  # by evaluation set (eval_sets.py)

MKDOCS_PACKAGE = "mkdocs-doc"  # MkDocs' own documentation as `mkdocs build` wrote it (BSD licence)
MKDOCS_HTML = Path("/usr/share/doc/mkdocs/html")


def build(out: Path, site: PublishedSite) -> dict[str, int]:
    """Copy `site`'s build under `out/<creator>/` (replacing `out`), following the package's links into
    libjs-sphinxdoc so the folder stands alone; returns its pages per creator."""
    if out.exists():
        shutil.rmtree(out)
    folder = out / site.creator
    shutil.copytree(site.html, folder, symlinks=False)
    (folder / "creator.yaml").write_text(site.creator_yaml, encoding="utf-8")
    return {site.creator: sum(1 for _ in folder.rglob("*.html"))}


def build_sources(out: Path, site: PublishedSite = FLASK) -> dict[str, int]:
    """The same documentation as its reST sources: `out/<creator>/<page>.rst` for every `_sources/<page>.rst.txt`
    the build keeps (replacing `out`), so the questions judged to `<creator>/<page>.html` judge
    `<creator>/<page>.rst`; returns its pages per creator."""
    if out.exists():
        shutil.rmtree(out)
    folder = out / site.creator
    folder.mkdir(parents=True)
    yaml = site.creator_yaml.replace("as Sphinx built it", "as its reST sources")
    (folder / "creator.yaml").write_text(yaml, encoding="utf-8")
    count = 0
    for source in sorted((site.html / "_sources").rglob("*.rst.txt")):
        relative = source.relative_to(site.html / "_sources")
        page = folder / relative.with_name(relative.name.removesuffix(".txt"))
        page.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, page)
        count += 1
    return {site.creator: count}
