"""Chunking: token bounds, coverage, order, headings, overlap and transcript times, checked with hypothesis."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.retrieval.embedder import Embedder, TokenWindow
from backend.retrieval.search import embed_text
from backend.stages import Block, Chunk, Document
from pipeline.chunk import chunk_document, count_tokens
from pipeline.sources import content_files, parse_file

CONTENT = Path(__file__).resolve().parents[2] / "examples" / "content"
PROPERTY = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def document(blocks: list[Block], **extra: str) -> Document:
    return Document(
        creator="ada",
        document_id="ada/doc.md",
        source="ada/doc.md",
        title="Doc",
        blocks=tuple(blocks),
        url=extra.get("url"),
        published=extra.get("published"),
    )


def is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(item == candidate for candidate in it) for item in needle)


def check_invariants(doc: Document, chunks: list[Chunk], size: int) -> None:
    assert [c.position for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text.strip()
        assert count_tokens(chunk.text) <= size
        assert (chunk.creator, chunk.document_id, chunk.source, chunk.title) == (
            "ada",
            "ada/doc.md",
            "ada/doc.md",
            "Doc",
        )
        assert (chunk.url, chunk.published, chunk.document_hash) == (doc.url, doc.published, doc.content_hash)
    # Everything the document says is in some chunk, in order (overlap only repeats, never reorders).
    doc_chars = [ch for ch in doc.text if not ch.isspace()]
    chunk_chars = [ch for c in chunks for ch in c.text if not ch.isspace()]
    assert is_subsequence(doc_chars, chunk_chars)
    if any(b.text.strip() for b in doc.blocks):
        assert chunks


words = st.sampled_from(
    ["salt", "flour", "water", "starter", "levain", "Hydration.", "crumb!", "Why?", "tempér", "日本語", "🍞", "x"]
)
sentences = st.lists(words, min_size=1, max_size=60).map(" ".join)
paragraph_blocks = st.lists(sentences, min_size=1, max_size=4).map(lambda s: Block(text=" ".join(s)))
heading_blocks = st.builds(
    lambda text, level: Block(text=text, kind="heading", level=level), sentences, st.integers(1, 4)
)
any_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=400)
sizes = st.integers(min_value=8, max_value=120)


@PROPERTY
@given(blocks=st.lists(st.one_of(paragraph_blocks, heading_blocks), max_size=25), size=sizes, data=st.data())
def test_structured_documents(blocks: list[Block], size: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(min_value=0, max_value=size - 1))
    doc = document(blocks, url="https://example.com/d", published="2024-01-01")
    chunks = chunk_document(doc, size_tokens=size, overlap_tokens=overlap)
    check_invariants(doc, chunks, size)
    # Whole words survive: no word is cut in two (every word here is shorter than any size).
    assert is_subsequence(doc.text.split(), [w for c in chunks for w in c.text.split()])
    assert chunk_document(doc, size_tokens=size, overlap_tokens=overlap) == chunks


@PROPERTY
@given(texts=st.lists(any_text, min_size=1, max_size=6), size=sizes, data=st.data())
def test_arbitrary_text(texts: list[str], size: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(min_value=0, max_value=size - 1))
    doc = document([Block(text=t) for t in texts])
    chunks = chunk_document(doc, size_tokens=size, overlap_tokens=overlap)
    check_invariants(doc, chunks, size)
    assert chunk_document(doc, size_tokens=size, overlap_tokens=overlap) == chunks


@st.composite
def transcripts(draw: st.DrawFn) -> list[Block]:
    cues, clock = [], draw(st.floats(0, 100))
    for _ in range(draw(st.integers(1, 40))):
        clock += draw(st.floats(0, 30))
        length = draw(st.floats(0.5, 8))
        cues.append(Block(text=draw(sentences), kind="cue", start_seconds=clock, end_seconds=clock + length))
        clock += length
    return cues


@PROPERTY
@given(cues=transcripts(), size=sizes, data=st.data())
def test_transcript_times(cues: list[Block], size: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(min_value=0, max_value=size - 1))
    doc = document(cues)
    chunks = chunk_document(doc, size_tokens=size, overlap_tokens=overlap)
    check_invariants(doc, chunks, size)
    first, last = cues[0].start_seconds, cues[-1].end_seconds
    starts = {c.start_seconds for c in cues}
    ends = {c.end_seconds for c in cues}
    for chunk in chunks:
        assert chunk.start_seconds in starts and chunk.end_seconds in ends
        assert first <= chunk.start_seconds <= chunk.end_seconds <= last
    assert [c.start_seconds for c in chunks] == sorted(c.start_seconds for c in chunks)
    assert [c.end_seconds for c in chunks] == sorted(c.end_seconds for c in chunks)
    assert chunks[0].start_seconds == first and chunks[-1].end_seconds == last


def test_transcript_overlap_is_whole_cues() -> None:
    cues = [
        Block(
            text=f"Cue number {i} says something about salt.",
            kind="cue",
            start_seconds=i * 5.0,
            end_seconds=i * 5.0 + 4,
        )
        for i in range(30)
    ]
    chunks = chunk_document(document(cues), size_tokens=40, overlap_tokens=15)
    assert len(chunks) > 3
    cue_texts = {c.text for c in cues}
    for previous, current in itertools.pairwise(chunks):
        lines = current.text.split("\n")
        assert set(lines) <= cue_texts
        assert lines[0] == previous.text.split("\n")[-1]  # the last cue carried over whole
        assert current.start_seconds == previous.end_seconds - 4


def test_headings_start_chunks_and_set_the_trail() -> None:
    doc = document(
        [
            Block(text="Starters", kind="heading", level=1),
            Block(text="Intro paragraph."),
            Block(text="Feeding", kind="heading", level=2),
            Block(text="Feed daily."),
            Block(text="Details", kind="heading", level=3),
            Block(text="Use a scale."),
            Block(text="Salt", kind="heading", level=2),
            Block(text="Two percent."),
        ]
    )
    chunks = chunk_document(doc, size_tokens=200, overlap_tokens=20)
    assert [(c.heading, c.text) for c in chunks] == [
        ("Starters", "Starters\n\nIntro paragraph."),
        ("Starters > Feeding", "Feeding\n\nFeed daily."),
        ("Starters > Feeding > Details", "Details\n\nUse a scale."),
        ("Starters > Salt", "Salt\n\nTwo percent."),
    ]


def test_consecutive_headings_stay_with_their_content() -> None:
    doc = document(
        [Block(text="Book", kind="heading", level=1), Block(text="Part", kind="heading", level=2), Block(text="Body.")]
    )
    [chunk] = chunk_document(doc, size_tokens=100, overlap_tokens=10)
    assert (chunk.heading, chunk.text) == ("Book > Part", "Book\n\nPart\n\nBody.")


def test_oversized_paragraph_splits_at_sentences_with_overlap() -> None:
    sentences = [f"Sentence {n} explains why the dough needs {n} minutes of rest." for n in range(20)]
    doc = document([Block(text=" ".join(sentences))])
    chunks = chunk_document(doc, size_tokens=60, overlap_tokens=20)
    assert len(chunks) > 3
    for chunk in chunks:
        # Each chunk is a run of whole sentences.
        pieces = [p if p.endswith(".") else p + "." for p in chunk.text.split(". ")]
        assert all(piece in sentences for piece in pieces)
    for previous, current in itertools.pairwise(chunks):
        assert previous.text.endswith(current.text.split(". ")[0] + ".")  # overlap: last sentence repeats


def test_no_overlap_across_a_heading() -> None:
    doc = document(
        [
            Block(text="word " * 50),
            Block(text="Next", kind="heading", level=2),
            Block(text="fresh start"),
        ]
    )
    chunks = chunk_document(doc, size_tokens=30, overlap_tokens=10)
    assert chunks[-1].text == "Next\n\nfresh start"


def test_giant_word_is_cut_at_token_boundaries() -> None:
    word = "é日本🍞" * 200
    chunks = chunk_document(document([Block(text=word)]), size_tokens=16, overlap_tokens=0)
    assert "".join(c.text for c in chunks) == word
    assert all(count_tokens(c.text) <= 16 for c in chunks)


def test_code_block_splits_at_lines() -> None:
    lines = [f"    line_{i} = compute({i})" for i in range(40)]
    chunks = chunk_document(document([Block(text="\n".join(lines))]), size_tokens=50, overlap_tokens=0)
    assert len(chunks) > 1
    # Cut between lines only, and indentation inside a chunk is kept.
    assert [line.strip() for c in chunks for line in c.text.split("\n")] == [line.strip() for line in lines]
    assert all("\n    line_" in c.text for c in chunks if "\n" in c.text)
    assert sum("\n" in c.text for c in chunks) >= len(chunks) - 1


def test_empty_document_and_bad_arguments() -> None:
    assert chunk_document(document([]), size_tokens=50, overlap_tokens=0) == []
    assert chunk_document(document([Block(text="  \n ")]), size_tokens=50, overlap_tokens=0) == []
    with pytest.raises(ValueError, match="overlap_tokens"):
        chunk_document(document([Block(text="x")]), size_tokens=50, overlap_tokens=50)
    with pytest.raises(ValueError, match="size_tokens"):
        chunk_document(document([Block(text="x")]), size_tokens=4, overlap_tokens=0)


def test_count_tokens() -> None:
    assert count_tokens("hello world") == 2
    assert count_tokens("") == 0
    assert count_tokens("<|endoftext|>") > 1  # content that looks like a special token is plain text


def test_demo_corpus_chunks() -> None:
    total = 0
    for creator_root in sorted(p for p in CONTENT.iterdir() if p.is_dir()):
        for path in content_files(creator_root):
            for doc in parse_file(path, creator=creator_root.name, creator_root=creator_root).documents:
                chunks = chunk_document(doc, size_tokens=256, overlap_tokens=32)
                total += len(chunks)
                assert all(count_tokens(c.text) <= 256 and c.creator == creator_root.name for c in chunks)
                assert len({c.chunk_id for c in chunks}) == len(chunks)
                if path.suffix in {".srt", ".vtt"}:
                    assert all(c.start_seconds is not None and c.end_seconds is not None for c in chunks)
                if path.suffix == ".md":
                    assert chunks[0].heading  # every article opens with a heading
    assert total > 50


# --- issue 15: every chunk, with its title/heading prefix, fits the embedding model's window -------------


@dataclass(frozen=True)
class NarrowWindow:
    """The real model's tokenizer with a smaller window, so short generated documents hit the limit often."""

    embedder: Embedder
    max_tokens: int

    def count_tokens(self, text: str) -> int:
        return self.embedder.count_tokens(text)


def assert_fits_window(chunks: list[Chunk], window: TokenWindow) -> None:
    for chunk in chunks:
        embedded = embed_text(chunk)
        # A prefix that leaves (almost) no room is the one case the chunker cannot help: it is cut in
        # embed_text to PREFIX_MAX_CHARS per line, which the real 256-token window always has room for.
        room = window.max_tokens - window.count_tokens(embed_text(replace(chunk, text="x")))
        if room >= 8:
            assert window.count_tokens(embedded) <= window.max_tokens, (chunk.heading, chunk.text)


@PROPERTY
@given(
    blocks=st.lists(st.one_of(paragraph_blocks, heading_blocks), max_size=25),
    title=sentences,
    window_tokens=st.integers(min_value=48, max_value=160),
    size=st.integers(min_value=16, max_value=300),
    data=st.data(),
)
def test_chunks_fit_the_model_window_with_their_prefix(
    shared_embedder: Embedder, blocks: list[Block], title: str, window_tokens: int, size: int, data: st.DataObject
) -> None:
    overlap = data.draw(st.integers(min_value=0, max_value=size - 1))
    doc = dataclasses.replace(document(blocks), title=title)
    window = NarrowWindow(shared_embedder, window_tokens)
    chunks = chunk_document(doc, size_tokens=size, overlap_tokens=overlap, window=window)
    for chunk in chunks:
        assert count_tokens(chunk.text) <= size  # the prompt budget still holds
    assert_fits_window(chunks, window)
    doc_chars = [ch for ch in doc.text if not ch.isspace()]
    assert is_subsequence(doc_chars, [ch for c in chunks for ch in c.text if not ch.isspace()])
    assert chunk_document(doc, size_tokens=size, overlap_tokens=overlap, window=window) == chunks


def test_technical_prose_is_cut_for_the_model_not_for_tiktoken(shared_embedder: Embedder) -> None:
    """The bug: 256 cl100k tokens of identifier-heavy prose are well over 256 word pieces."""
    prose = " ".join(
        f"Set max_wal_senders_{i} and wal_keep_size before pg_basebackup streams WAL segment 0000000{i}."
        for i in range(60)
    )
    doc = dataclasses.replace(
        document([Block(text="Streaming replication setup", kind="heading"), Block(text=prose)]),
        title="High Availability, Load Balancing, and Replication",
    )
    old = chunk_document(doc, size_tokens=256, overlap_tokens=32)
    assert any(shared_embedder.count_tokens(embed_text(c)) > shared_embedder.max_tokens for c in old)
    fitted = chunk_document(doc, size_tokens=256, overlap_tokens=32, window=shared_embedder)
    assert len(fitted) > len(old)
    for chunk in fitted:
        assert shared_embedder.count_tokens(embed_text(chunk)) <= shared_embedder.max_tokens
        assert chunk.heading == "Streaming replication setup"
    assert is_subsequence(prose.split(), [w for c in fitted for w in c.text.split()])


def test_demo_corpus_fits_the_bundled_model(shared_embedder: Embedder) -> None:
    for creator_root in sorted(p for p in CONTENT.iterdir() if p.is_dir()):
        for path in content_files(creator_root):
            for doc in parse_file(path, creator=creator_root.name, creator_root=creator_root).documents:
                chunks = chunk_document(doc, size_tokens=256, overlap_tokens=32, window=shared_embedder)
                assert chunks
                for chunk in chunks:
                    assert shared_embedder.count_tokens(embed_text(chunk)) <= shared_embedder.max_tokens
