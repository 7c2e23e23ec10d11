"""PDF (.pdf) through pypdf: page text into paragraphs; title from the metadata or the file name."""

from __future__ import annotations

import io
import logging
import re
import warnings

from pypdf import PdfReader

from backend.stages import Block, Document
from pipeline.sources.common import (
    ParseError,
    ParseResult,
    SourceContext,
    collapse,
    paragraphs,
    read_bytes,
    title_from_name,
)

# A word broken across lines: "fermen-\ntation" -> "fermentation".
_HYPHEN_BREAK = re.compile(r"(\w)-\n(\w)")


def parse_pdf(ctx: SourceContext) -> ParseResult:
    data = read_bytes(ctx)
    if not data.lstrip().startswith(b"%PDF"):
        raise ctx.error("not a PDF file (missing %PDF header)")
    # pypdf reports recoverable damage through logging and warnings; a broken file surfaces as an
    # exception of almost any type, so every failure below becomes one ParseError.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise ctx.error("the PDF is password-protected")
            pages = [page.extract_text() or "" for page in reader.pages]
            title = _metadata_title(reader)
    except ParseError:
        raise
    except Exception:  # RecursionError included: deeply nested objects in a damaged file
        raise ctx.error("the PDF is corrupt or unreadable") from None
    blocks: list[Block] = []
    for page in pages:
        blocks.extend(paragraphs(_paragraph_breaks(_HYPHEN_BREAK.sub(r"\1\2", page))))
    if not blocks:
        raise ctx.error("the PDF has no extractable text (a scan? run OCR first)")
    document = Document(
        kind="pdf",
        creator=ctx.creator,
        document_id=ctx.document_id,
        source=ctx.source,
        title=title or title_from_name(ctx.path),
        blocks=tuple(blocks),
        metadata={"pages": len(pages)},
    )
    return ParseResult(documents=[document])


def _paragraph_breaks(page: str) -> str:
    """pypdf gives one line per text line and no blank lines: end a paragraph after a line clearly
    shorter than the page's typical line (a paragraph's last line, or a heading)."""
    lines = [line.strip() for line in page.split("\n")]
    longest = max((len(line) for line in lines), default=0)
    out = []
    for line in lines:
        out.append(line)
        if len(line) < 0.7 * longest:
            out.append("")
    return "\n".join(out)


def _metadata_title(reader: PdfReader) -> str | None:
    meta = reader.metadata
    title = meta.title if meta is not None else None
    return collapse(str(title)) or None if title else None
