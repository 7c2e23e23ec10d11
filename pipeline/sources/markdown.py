"""Markdown (.md): YAML front matter, ATX/setext headings, paragraphs, whole code fences."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import yaml

from backend.stages import Block, Document
from pipeline.sources.common import (
    ParseResult,
    SourceContext,
    collapse,
    collapse_lines,
    read_text,
    require_blocks,
    title_from_name,
)

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# Lines that keep their own line inside a paragraph instead of being joined with a space.
_LINE_ITEM = re.compile(r"^\s*(?:[-*+][ \t]|\d+[.)][ \t]|>|\|)")


def parse_markdown(ctx: SourceContext) -> ParseResult:
    text = read_text(ctx)
    meta, body = _split_front_matter(ctx, text)
    blocks = markdown_blocks(body)
    title = _meta_str(ctx, meta, "title") or _first_heading(blocks) or title_from_name(ctx.path)
    document = Document(
        kind="article",
        creator=ctx.creator,
        document_id=ctx.document_id,
        source=ctx.source,
        title=title,
        blocks=require_blocks(ctx, blocks),
        url=_meta_str(ctx, meta, "url"),
        published=_meta_str(ctx, meta, "published"),
        metadata={k: v for k, v in meta.items() if k not in {"title", "url", "published"} and _scalar(v)},
    )
    return ParseResult(documents=[document])


def _split_front_matter(ctx: SourceContext, text: str) -> tuple[dict[str, Any], str]:
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark is not None else ""
        raise ctx.error(f"front matter is not valid YAML{where}") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ctx.error("front matter must be a mapping of keys to values")
    return meta, text[match.end() :]


def _meta_str(ctx: SourceContext, meta: dict[str, Any], key: str) -> str | None:
    value = meta.get(key)
    if value is None:
        return None
    # YAML turns `published: 2024-05-01` into a date; keep it as ISO text.
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ctx.error(f"front matter field '{key}' must be text")
    return collapse(str(value)) or None


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _first_heading(blocks: list[Block]) -> str | None:
    return next((b.text for b in blocks if b.kind == "heading" and b.level == 1), None)


def markdown_blocks(body: str) -> list[Block]:
    """Markdown text as blocks: ATX and setext headings, paragraphs, whole code fences."""
    blocks: list[Block] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            text = _join_paragraph(para)
            if text:
                blocks.append(Block(text=text))
            para.clear()

    lines = body.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            flush()
            marker = fence.group(1)
            end = i + 1
            while end < len(lines) and not lines[end].lstrip().startswith(marker):
                end += 1
            # Code stays byte-for-byte (indentation matters), fences included; an unclosed fence runs to EOF.
            code = "\n".join(lines[i : end + 1]).strip("\n")
            blocks.append(Block(text=code))
            i = end + 1
            continue
        atx = _ATX.match(line)
        if atx:
            flush()
            heading = collapse(atx.group(2) or "")
            if heading:
                blocks.append(Block(text=heading, kind="heading", level=len(atx.group(1))))
            i += 1
            continue
        setext = _SETEXT.match(line)
        if setext and len(para) == 1 and not _LINE_ITEM.match(para[0]):
            heading = collapse(para[0])
            para.clear()
            blocks.append(Block(text=heading, kind="heading", level=1 if setext.group(1)[0] == "=" else 2))
            i += 1
            continue
        if not line.strip():
            flush()
        else:
            para.append(line)
        i += 1
    flush()
    return blocks


def _join_paragraph(lines: list[str]) -> str:
    if any(_LINE_ITEM.match(line) for line in lines):
        return collapse_lines("\n".join(lines))
    return collapse(" ".join(lines))
