"""Small builders shared by the chat tests: plain data, and the one short prompt the tier tests send."""

from __future__ import annotations

from backend.chat.prompt import Prompt, build_prompt
from backend.stages import Creator, Hit

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


def engine_prompt(*, max_tokens: int) -> Prompt:
    """One short question over one source: what the tier tests send to a real model or server."""
    return build_prompt(
        question="What does the engine read?",
        sources=[hit(1, "The analytical engine reads punched cards.")],
        history=[],
        creator=ADA,
        personality_weight=0.0,
        context_window=2048,
        max_tokens=max_tokens,
    )
