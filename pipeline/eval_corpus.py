"""What every eval corpus built from a documentation package shares (pipeline/eval_pgdocs.py,
pipeline/eval_debdocs.py): a section of the manual, and the content folder written from a list of them, one creator
folder per part of the manual with its creator.yaml, one HTML page per section."""

from __future__ import annotations

import html
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Section:
    page: str  # file name in the creator folder, e.g. "git-stash.html"
    creator: str
    title: str
    body: str  # the section's own HTML
    words: int


def write_corpus(sections: Iterable[Section], out: Path, creators: dict[str, tuple[str, str]]) -> dict[str, int]:
    """Write the content folder under `out` (replacing it): a folder per creator (slug -> (name, bio)), in order,
    and each section's page in its creator's folder. Returns sections per creator."""
    sections = list(sections)  # read before the old folder goes: a reader that fails leaves it in place
    if out.exists():
        shutil.rmtree(out)
    counts: dict[str, int] = {}
    for slug, (name, bio) in creators.items():
        folder = out / slug
        folder.mkdir(parents=True)
        # JSON strings are YAML strings: quoted, so a colon in a name stays text.
        (folder / "creator.yaml").write_text(
            f"name: {json.dumps(name, ensure_ascii=False)}\nbio: {json.dumps(bio, ensure_ascii=False)}\n",
            encoding="utf-8",
        )
        counts[slug] = 0
    for section in sections:
        page = (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>'
            f"{html.escape(section.title)}</title></head>\n<body>{section.body}</body></html>\n"
        )
        (out / section.creator / section.page).write_text(page, encoding="utf-8")
        counts[section.creator] += 1
    return counts
