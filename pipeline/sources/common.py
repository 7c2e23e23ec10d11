"""Shared parser helpers: the ParseError type, safe file reading, text normalisation and document identity."""

from __future__ import annotations

import errno
import os
import re
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from backend.stages import Block, Document


class ParseError(ValueError):
    """A whole file could not be parsed. `str()` is a one-line message safe to show a curator."""

    def __init__(self, reason: str, *, source: str | None = None) -> None:
        self.reason = reason
        self.source = source
        super().__init__(f"{source}: {reason}" if source else reason)


@dataclass(slots=True)
class ParseResult:
    """What one file yielded: its documents, plus per-record problems that did not sink the whole file
    (only .jsonl has records, so only it fills `errors`, one "<file>#L<n>: <reason>" line per bad line)."""

    documents: list[Document] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SourceContext:
    """Where a file sits, so every parser names documents the same way."""

    path: Path
    creator: str
    creator_root: Path

    @property
    def relpath(self) -> str:
        return self.path.relative_to(self.creator_root).as_posix()

    @property
    def document_id(self) -> str:
        return f"{self.creator}/{self.relpath}"

    @property
    def source(self) -> str:
        # Relative to the content root (the creator folder's parent): "ada/talks/intro.vtt".
        return self.path.relative_to(self.creator_root.parent).as_posix()

    def error(self, reason: str) -> ParseError:
        return ParseError(reason, source=self.source)


# C0/C1 controls except tab and newline, plus BOMs, lone surrogates and non-characters anywhere in the text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\ufffe\uffff\ud800-\udfff]")
_SPACES = re.compile(r"\s+")
_HORIZONTAL = re.compile(r"[^\S\n]+")


def clean_text(text: str) -> str:
    """NFC, Unix newlines, no control characters; layout (newlines, indentation) is kept."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    return unicodedata.normalize("NFC", text)


def collapse(text: str) -> str:
    """One paragraph on one line: every run of whitespace becomes a single space."""
    return _SPACES.sub(" ", clean_text(text)).strip()


def collapse_lines(text: str) -> str:
    """Collapse spaces inside each line but keep the line breaks (lists, code, verse)."""
    lines = (_HORIZONTAL.sub(" ", line).strip() for line in clean_text(text).split("\n"))
    return "\n".join(line for line in lines if line)


def read_text(ctx: SourceContext) -> str:
    """The file as normalised text; empty, whitespace-only or non-UTF-8 files are a ParseError."""
    data = read_bytes(ctx)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ctx.error(f"not valid UTF-8 (bad byte at offset {exc.start}); save the file as UTF-8") from None
    text = clean_text(text)
    if not text.strip():
        raise ctx.error("file is empty or whitespace only")
    return text


def read_bytes(ctx: SourceContext) -> bytes:
    try:
        data = read_confined(ctx.path, ctx.creator_root)
    except OutsideRoot as exc:
        raise ctx.error(str(exc)) from None
    except OSError as exc:
        raise ctx.error(f"cannot read file ({exc.strerror or type(exc).__name__})") from None
    if not data.strip():
        raise ctx.error("file is empty or whitespace only")
    return data


class OutsideRoot(OSError):
    """The file that was opened is not inside the folder it was read for."""


def inside(root: Path | str, target: Path | str) -> bool:
    """Whether the real path `target` lies in the real folder `root` (both already resolved)."""
    root, target = os.fspath(root), os.fspath(target)
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def read_confined(path: Path, root: Path) -> bytes:
    """The bytes of the regular file `path`, which must really lie inside `root` once every symbolic link is
    followed: the one rule for what an ingest may read. A link (or a folder on the way that was swapped for one)
    leading out of the creator's folder, to another creator's folder or to /etc/passwd alike, is refused.

    The check is made on the file actually opened (its descriptor's path), not on a name looked up before, so
    nothing can be swapped in between; FIFOs and devices are refused without blocking on them."""
    real_root = os.path.realpath(root)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        try:
            opened = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # no /proc: the resolved name (a race remains possible there)
            opened = os.path.realpath(path)
        if not inside(real_root, opened):
            raise OutsideRoot("symbolic link to a file outside the creator folder; not read (copy the file here)")
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
        if not stat.S_ISREG(info.st_mode):
            raise OutsideRoot("not a regular file (a pipe or a device); skipped")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as file:
            fd = -1
            return file.read()
    finally:
        if fd >= 0:
            os.close(fd)


def title_from_name(path: Path) -> str:
    """'sourdough-starter_basics.md' -> 'Sourdough starter basics'."""
    words = re.sub(r"[-_]+", " ", path.stem).strip()
    return words[:1].upper() + words[1:] if words else path.name


def paragraphs(text: str) -> list[Block]:
    """Blank-line separated paragraphs, each collapsed to one line."""
    blocks = []
    for part in re.split(r"\n\s*\n", text):
        collapsed = collapse(part)
        if collapsed:
            blocks.append(Block(text=collapsed))
    return blocks


def require_blocks(ctx: SourceContext, blocks: list[Block]) -> tuple[Block, ...]:
    if not blocks:
        raise ctx.error("no text found")
    return tuple(blocks)
