"""What gets embedded for a chunk, and how result snippets are cut."""

from __future__ import annotations

from backend.retrieval.search import PREFIX_MAX_CHARS, embed_text, snippet
from tests.backend.retrieval.conftest import make_chunk


def test_embed_text_prefixes_title_and_heading() -> None:
    chunk = make_chunk("baker", "baker/a.md", 0, "Preheat to 220°C.", title="Sourdough", heading="Baking")
    assert embed_text(chunk) == "Sourdough\nBaking\nPreheat to 220°C."


def test_embed_text_does_not_repeat_context() -> None:
    trail = make_chunk("baker", "baker/a.md", 0, "Text.", title="Sourdough", heading="Sourdough > Baking")
    assert embed_text(trail) == "Sourdough > Baking\nText."
    starts_with_heading = make_chunk("baker", "baker/a.md", 1, "Baking\n\nText.", title="T", heading="Baking")
    assert embed_text(starts_with_heading) == "T\nBaking\n\nText."
    bare = make_chunk("baker", "baker/a.md", 2, "Text.", title="")
    assert embed_text(bare) == "Text."


def test_snippet() -> None:
    assert snippet("  short\n\n text ", 40) == "short text"
    long = "word " * 30
    cut = snippet(long, 42)
    assert len(cut) <= 42
    assert cut.endswith("…")
    assert not cut[:-1].endswith(" ")
    assert snippet("x" * 100, 40) == "x" * 39 + "…"


def test_a_long_title_or_heading_is_cut_in_the_prefix_only() -> None:
    chunk = make_chunk("baker", "baker/a.md", 0, "Text.", title="T" * 500, heading="H" * 500)
    title, heading, text = embed_text(chunk).split("\n")
    assert len(title) == len(heading) == PREFIX_MAX_CHARS and title.endswith("…")
    assert text == "Text."


def test_snippet_reads_only_the_prefix_it_needs_with_the_same_result() -> None:
    # A prefix is collapsed, not the whole text: whitespace runs at the prefix's edge must not change the result.
    assert snippet("  ébb  é  \n  ", 5) == "ébb é"  # trailing whitespace past the first prefix is not content
    assert snippet(" " * 500 + "tail words here", 12) == "tail words…"  # the prefix grows until it has text
    spaced = "a" + " \n " * 300 + "b " * 20
    assert snippet(spaced, 6) == "a b…"
    assert snippet("word " * 2000, 320) == snippet("word " * 70, 320)
