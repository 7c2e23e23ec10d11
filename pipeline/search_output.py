"""How `lorechat search` shows hits: JSON objects for machines, readable lines for curators."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

from rich.console import Console

from backend.retrieval.search import snippet
from backend.stages import Hit, format_timestamp
from pipeline.terminal import markup


def hit_json(hit: Hit, snippet_chars: int) -> dict[str, Any]:
    return {
        "creator": hit.creator,
        "document_id": hit.document_id,
        "source": hit.source,
        "title": hit.title,
        "url": hit.url,
        "snippet": snippet(hit.text, snippet_chars),
        "score": hit.score,
        "start_seconds": hit.start_seconds,
        "end_seconds": hit.end_seconds,
    }


def print_hits(console: Console, hits: list[Hit], *, snippet_chars: int) -> None:
    if not hits:
        console.print("No results.")
        return
    for rank, hit in enumerate(hits, start=1):
        when = f" @ {format_timestamp(hit.start_seconds)}" if hit.start_seconds is not None else ""
        console.print(
            f"[bold]{rank}.[/] [cyan]{markup(hit.creator)}[/] · [bold]{markup(hit.title)}[/]{when}"
            f"  [dim]{hit.score:.4f}  {markup(hit.source)}[/]"
        )
        console.print(f"   {markup(snippet(hit.text, snippet_chars))}\n")


def read_batch(handle: IO[str]) -> Iterator[tuple[int, tuple[str, str | None] | str]]:
    """Yields (line number, (query, creator)) or (line number, error message) for each non-blank line."""
    for line_no, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            yield line_no, f"invalid JSON: {exc.msg}"
            continue
        if not isinstance(item, dict) or not isinstance(item.get("query"), str) or not item["query"].strip():
            yield line_no, 'expected an object with a non-empty "query" string'
            continue
        creator = item.get("creator")
        if creator is not None and not isinstance(creator, str):
            yield line_no, '"creator" must be a string'
            continue
        yield line_no, (item["query"], creator)
