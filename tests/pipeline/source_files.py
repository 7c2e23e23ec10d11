"""Small content files written for the parser tests, and the parser called as ingest calls it (creator "ada")."""

from __future__ import annotations

import io
from pathlib import Path

from backend.stages import Document
from pipeline.sources import ParseResult, parse_file


def write(root: Path, rel: str, data: str | bytes) -> Path:
    path = root / "ada" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8", newline="")
    else:
        path.write_bytes(data)
    return path


def parse(path: Path) -> ParseResult:
    root = next(p for p in path.parents if p.name == "ada")
    return parse_file(path, creator="ada", creator_root=root)


def parse_one(path: Path) -> Document:
    result = parse(path)
    assert result.errors == []
    assert len(result.documents) == 1
    return result.documents[0]


def text_pdf(lines: list[str], *, title: str | None = None) -> bytes:
    """A one-page PDF with real text: the smallest file pypdf will extract from."""
    body = "BT /F1 12 Tf 14 TL 72 720 Td " + " ".join(f"({line}) Tj T*" for line in lines) + " ET"
    info = f"/Title ({title})" if title else ""
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(body)} >>\nstream\n{body}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< {info} >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n{obj}\nendobj\n".encode())
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    out.write("".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 6 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()
