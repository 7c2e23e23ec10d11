"""Small builders shared by the chat tests: plain data, the one short prompt the tier tests send, and the extractive
tier's prompts over given sources (`prompt_for`)."""

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


SOURCES = [
    hit(1, "Ada wrote the first published program. It computed Bernoulli numbers for the engine."),
    hit(2, "The engine reads punched cards, an idea borrowed from the Jacquard loom. Cards hold operations."),
    hit(3, "Babbage never finished building the analytical engine in his lifetime."),
]


def prompt_for(question: str, *, sources=SOURCES, creator=ADA, weight: float = 0.0, covered: bool = True) -> Prompt:
    prompt = build_prompt(
        question=question,
        sources=sources,
        history=[],
        creator=creator,
        personality_weight=weight,
        context_window=4096,
        max_tokens=256,
    )
    prompt.covered = covered
    return prompt
