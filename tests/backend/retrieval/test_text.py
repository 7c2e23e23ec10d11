"""What gets embedded for a chunk, and how result snippets are cut."""

from __future__ import annotations

from backend.retrieval.search import embed_text, snippet
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
