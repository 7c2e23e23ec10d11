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
