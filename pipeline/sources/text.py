"""Plain text (.txt): blank-line paragraphs; a short first line is the title."""

from __future__ import annotations

from backend.stages import Block, Document
from pipeline.sources.common import (
    ParseResult,
    SourceContext,
    paragraphs,
    read_text,
    require_blocks,
    title_from_name,
)


def parse_text(ctx: SourceContext) -> ParseResult:
    text = read_text(ctx)
    blocks = paragraphs(text)
    first = blocks[0].text if blocks else ""
    # A short first paragraph reads as a title line; a long one is just the opening paragraph.
    if len(blocks) > 1 and len(first) <= 100:
        title = first
        blocks[0] = Block(text=first, kind="heading", level=1)
    else:
        title = title_from_name(ctx.path)
    document = Document(
        kind="text",
        creator=ctx.creator,
        document_id=ctx.document_id,
        source=ctx.source,
        title=title,
        blocks=require_blocks(ctx, blocks),
    )
    return ParseResult(documents=[document])
