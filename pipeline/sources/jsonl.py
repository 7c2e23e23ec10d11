"""JSON Lines (.jsonl): one document per line; a bad line is reported and the good lines still land."""

from __future__ import annotations

import json
from typing import Any

from backend.stages import Document
from pipeline.sources.common import (
    ParseResult,
    SourceContext,
    collapse,
    paragraphs,
    read_text,
)

REQUIRED = ("id", "title", "text")
OPTIONAL = ("url", "creator", "metadata", "published")


class _LineError(ValueError):
    pass


def parse_jsonl(ctx: SourceContext) -> ParseResult:
    text = read_text(ctx)
    result = ParseResult()
    seen: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{ctx.source}#L{number}"
        try:
            document = _document(ctx, line, number)
            if document.document_id in seen:
                raise _LineError(f"duplicate id (first used on line {seen[document.document_id]})")
        except _LineError as exc:
            result.errors.append(f"{where}: {exc}")
            continue
        seen[document.document_id] = number
        result.documents.append(document)
    if not result.documents:
        # Nothing usable: that is a failed file, not a partial one.
        first = result.errors[0].split(": ", 1)[1] if result.errors else "no records"
        raise ctx.error(f"no valid lines ({len(result.errors)} bad; first: {first})")
    return result


def _document(ctx: SourceContext, line: str, number: int) -> Document:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _LineError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise _LineError("each line must be a JSON object")
    missing = [key for key in REQUIRED if record.get(key) in (None, "")]
    if missing:
        raise _LineError(f"missing field(s): {', '.join(missing)}")
    doc_id = _text_field(record, "id")
    creator = _optional_text(record, "creator")
    if creator is not None and creator != ctx.creator:
        raise _LineError(f"creator {creator!r} does not match the folder's creator {ctx.creator!r}")
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise _LineError("field 'metadata' must be an object")
    blocks = paragraphs(_text_field(record, "text"))
    if not blocks:
        raise _LineError("field 'text' has no text")
    prefix = f"{ctx.creator}/"
    return Document(
        kind="record",
        creator=ctx.creator,
        document_id=doc_id if doc_id.startswith(prefix) else prefix + doc_id,
        source=f"{ctx.source}#L{number}",
        title=collapse(_text_field(record, "title")),
        blocks=tuple(blocks),
        url=_optional_text(record, "url"),
        published=_optional_text(record, "published"),
        metadata=metadata,
    )


def _text_field(record: dict[str, Any], key: str) -> str:
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _LineError(f"field '{key}' must be a string")
    text = str(value)
    if not collapse(text):
        raise _LineError(f"field '{key}' is empty")
    return text if key == "text" else collapse(text)


def _optional_text(record: dict[str, Any], key: str) -> str | None:
    if record.get(key) in (None, ""):
        return None
    return _text_field(record, key)
