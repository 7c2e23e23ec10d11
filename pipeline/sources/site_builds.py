"""Documentation builds copied in as published: which of a generated site's files are its content.

A curator often has a project's documentation as its generator wrote it (a Sphinx `html/` folder, as Debian's
`-doc` packages install them). Beside the pages, a build holds files that are not content: the reST each page was
built from (`_sources/*.rst.txt`, every page a second time as plain text), its stylesheets, scripts and fonts
(`_static/`, dozens of "unsupported file type" lines in an ingest report), and pages generated from the others:
the general index (`genindex.html`, every name the site documents on one page, which a question naming one
function or option ranks above that function's own page), the module index and the search page. Those are left
out of a build's folder; its pages are read as any HTML page (html.py drops the chrome inside them).

A folder is a Sphinx build when it holds both files every Sphinx HTML build writes: `objects.inv` (the inventory
other sites link to) and `searchindex.js`.
"""

from __future__ import annotations

import re
from pathlib import Path

_SPHINX_MARKERS = ("objects.inv", "searchindex.js")
_SPHINX_FOLDERS = frozenset({"_sources", "_static", "_images", "_downloads", "_modules"})
_SPHINX_PAGES = re.compile(
    r"^(?:genindex(?:-[^/]+)?|search|404|[a-z0-9_]*-?modindex)\.html$|^objects\.inv$|^searchindex\.js$"
)


def generated(relative: Path, builds: frozenset[Path]) -> bool:
    """Whether `relative` (a path under a creator folder) is a generated file of a build rooted at one of `builds`
    (folders relative to the same creator folder, from `build_roots`)."""
    for root in builds:
        if root not in relative.parents:  # a build at the creator folder's top is Path("."), every path's parent
            continue
        inner = relative.parts[len(root.parts) :]
        if inner and (inner[0] in _SPHINX_FOLDERS or (len(inner) == 1 and _SPHINX_PAGES.match(inner[0]))):
            return True
    return False


def build_roots(creator_root: Path, files: list[Path]) -> frozenset[Path]:
    """The folders among `files`' (relative to `creator_root`) that are a Sphinx build's root."""
    names: dict[Path, set[str]] = {}
    for file in files:
        relative = file.relative_to(creator_root)
        if relative.name in _SPHINX_MARKERS:
            names.setdefault(relative.parent, set()).add(relative.name)
    return frozenset(folder for folder, found in names.items() if found.issuperset(_SPHINX_MARKERS))
