"""Parse one content file into Documents, choosing the parser by file suffix.

Contract for callers (ingest):

- ``parse_file(path, creator=..., creator_root=...)`` returns a :class:`ParseResult`:
  ``documents`` (what to index) and ``errors`` (record-level problems, one line each, e.g.
  ``"ada/faq.jsonl#L7: invalid JSON (...)"``). Only .jsonl files have records; a bad line is reported
  there while the file's good lines still come back.
- A file that cannot be used at all (unknown suffix, empty or whitespace-only, not UTF-8, corrupt PDF,
  PDF without text, malformed transcript timing, a .jsonl with no valid line) raises :class:`ParseError`;
  ``str(error)`` is ``"<source>: <reason>"``, one line, no traceback, safe to show a curator, and
  ``error.reason`` is the bare reason.
- Identity: ``document_id = "<creator>/<path relative to creator_root>"`` (posix) for files; for .jsonl
  the record's ``id``, prefixed with ``"<creator>/"`` unless it already is. ``source`` is the path relative
  to the content root (``creator_root.parent``), plus ``#L<n>`` for .jsonl records.
- Text is normalised everywhere: NFC, Unix newlines, no NUL/control characters (tabs and newlines kept),
  whitespace collapsed inside paragraphs (code blocks keep their layout).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.sources.common import ParseError, ParseResult, SourceContext, inside
from pipeline.sources.html import parse_html
from pipeline.sources.jsonl import parse_jsonl
from pipeline.sources.markdown import parse_markdown
from pipeline.sources.pdf import parse_pdf
from pipeline.sources.rest import parse_rest
from pipeline.sources.site_builds import build_roots, generated
from pipeline.sources.text import parse_text
from pipeline.sources.transcripts import parse_srt, parse_vtt

__all__ = [
    "PARSERS",
    "SUPPORTED_SUFFIXES",
    "ParseError",
    "ParseResult",
    "content_files",
    "link_problem",
    "parse_file",
]

PARSERS: dict[str, Callable[[SourceContext], ParseResult]] = {
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".txt": parse_text,
    ".html": parse_html,
    ".htm": parse_html,
    ".pdf": parse_pdf,
    ".rst": parse_rest,
    ".rest": parse_rest,
    ".srt": parse_srt,
    ".vtt": parse_vtt,
    ".jsonl": parse_jsonl,
}
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(PARSERS)

# Files in a creator folder that are configuration, not content.
_NOT_CONTENT = {"creator.yaml"}


def parse_file(path: Path, *, creator: str, creator_root: Path) -> ParseResult:
    """Parse one file under `creator_root` (the creator's folder) for creator slug `creator`."""
    ctx = SourceContext(path=path, creator=creator, creator_root=creator_root)
    problem = link_problem(path, creator_root)
    if problem is not None:
        raise ctx.error(problem)
    parser = PARSERS.get(path.suffix.lower())
    if parser is None:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise ctx.error(f"unsupported file type {path.suffix or '(no suffix)'!r}; supported: {supported}")
    try:
        return parser(ctx)
    except RecursionError:  # one gate for every format: a file nested past any parser's depth fails alone (I9)
        raise ctx.error("nested too deeply to read (thousands of levels inside one another)") from None


def content_files(creator_root: Path) -> list[Path]:
    """Every file under a creator folder that ingest should try, sorted; unsupported ones included so
    they can be reported, and so are symbolic links that lead nowhere usable (a loop, a broken link, a
    folder: `parse_file` says which, I9). Hidden files and folders (".git", ".DS_Store"), creator.yaml and a
    documentation build's generated files (its page sources, assets, index, search, 404 and listing pages:
    site_builds.py) are skipped."""
    files = []
    for path in creator_root.rglob("*"):
        relative = path.relative_to(creator_root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if not path.is_file() and not path.is_symlink():
            continue
        if relative.as_posix() in _NOT_CONTENT:
            continue
        files.append(path)
    builds = build_roots(creator_root, files)
    if builds:
        files = [path for path in files if not generated(path.relative_to(creator_root), builds)]
    return sorted(files, key=lambda p: p.relative_to(creator_root).as_posix())


def link_problem(path: Path, creator_root: Path | None = None) -> str | None:
    """Why a symbolic link is not followed; None for anything that is not a link, or links to a file inside
    `creator_root` (reading enforces the same rule on the file it opens: `common.read_confined`).

    Folders reached through links are never walked (a link to an ancestor would loop forever), but they
    are named in the report instead of vanishing silently.
    """
    if not path.is_symlink():
        return None
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        return "broken symbolic link (its target does not exist); skipped"
    except (OSError, RuntimeError):  # ELOOP, or pathlib's "Symlink loop"
        return "symbolic link loop; skipped"
    if target.is_file():
        if creator_root is not None and not inside(creator_root.resolve(), target):
            return "symbolic link to a file outside the creator folder; not read (copy the file here)"
        return None
    if target.is_dir():
        here = path.parent.resolve()
        if target == here or target in here.parents:
            return "symbolic link loop (it points to a folder that contains it); not followed"
        return "symbolic link to a folder; not followed (copy or move the folder here instead)"
    return "symbolic link to something that is not a regular file; skipped"
