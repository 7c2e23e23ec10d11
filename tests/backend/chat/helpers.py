"""Small builders shared by the chat tests (plain data, no behaviour of our own code)."""

from __future__ import annotations

from backend.retrieval.models import Hit
from pipeline.models import Creator

ADA = Creator(
    slug="ada",
    name="Ada Lovelace",
    bio="Writes about analytical engines.",
    personality="Curious, precise and playful; loves a good metaphor.",
    phrases=("Let's crank the engine!", "Numbers are poetry."),
)


def hit(n: int, text: str, *, title: str | None = None, creator: str = "ada") -> Hit:
    return Hit(
        chunk_id=f"chunk-{n}",
        creator=creator,
        document_id=f"{creator}/doc-{n}.md",
        source=f"doc-{n}.md",
        title=title or f"Document {n}",
        url=None,
        text=text,
        score=1.0 / n,
        position=0,
    )
