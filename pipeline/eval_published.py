"""A documentation site as its generator published it, as an evaluation corpus: the Flask documentation's Sphinx
HTML build, copied whole from Debian's `python-flask-doc` (Flask 2.2, BSD licence), chrome, page sources
(`_sources/`), static assets, general index and search page included, into one creator folder (`flask`).

The other sets' corpora are sections cut out of their manuals with the navigation dropped by the builder; this one
is what a curator copies in from a project's `docs/_build/html` or `/usr/share/doc/*/html`, so it measures what
ingest makes of a site as published: the page chrome (`pipeline/sources/html.py`) and a build's generated files
(`pipeline/sources/site_builds.py`). Its questions (`examples/eval/flaskdocs/`) judge the pages; the build's own
copies of them (the `_sources/*.rst.txt` beside each page, the general index listing every name) are not answers.
"""

from __future__ import annotations

import shutil
from pathlib import Path

DEBIAN_PACKAGE = "python-flask-doc"
DEFAULT_HTML = Path("/usr/share/doc/python-flask-doc/html")
CREATOR = "flask"
_CREATOR_YAML = 'name: "Flask"\nbio: "The Flask 2.2 documentation as Sphinx built it (Debian python-flask-doc)."\n'


MKDOCS_PACKAGE = "mkdocs-doc"  # MkDocs' own documentation as `mkdocs build` wrote it (BSD licence)
MKDOCS_HTML = Path("/usr/share/doc/mkdocs/html")


def installed() -> bool:
    return (DEFAULT_HTML / "objects.inv").is_file()


def build(out: Path, html: Path = DEFAULT_HTML) -> dict[str, int]:
    """Copy the build under `out/flask/` (replacing `out`), following the package's links into libjs-sphinxdoc so
    the folder stands alone; returns its pages per creator."""
    if out.exists():
        shutil.rmtree(out)
    folder = out / CREATOR
    shutil.copytree(html, folder, symlinks=False)
    (folder / "creator.yaml").write_text(_CREATOR_YAML, encoding="utf-8")
    return {CREATOR: sum(1 for _ in folder.rglob("*.html"))}


def build_sources(out: Path, html: Path = DEFAULT_HTML) -> dict[str, int]:
    """The same documentation as its reST sources: `out/flask/<page>.rst` for every `_sources/<page>.rst.txt` the
    build keeps (replacing `out`), so the questions judged to `flask/<page>.html` judge `flask/<page>.rst`; returns
    its pages per creator."""
    if out.exists():
        shutil.rmtree(out)
    folder = out / CREATOR
    folder.mkdir(parents=True)
    (folder / "creator.yaml").write_text(_CREATOR_YAML.replace("as Sphinx built it", "as its reST sources"), "utf-8")
    count = 0
    for source in sorted((html / "_sources").rglob("*.rst.txt")):
        relative = source.relative_to(html / "_sources")
        page = folder / relative.with_name(relative.name.removesuffix(".txt"))
        page.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, page)
        count += 1
    return {CREATOR: count}
