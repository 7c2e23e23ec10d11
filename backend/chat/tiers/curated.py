"""The `curated` tier: a curator's answer, said as written, first in the cascade whenever one fits the question.

The match is made before the turn streams (`CuratedAnswers`, a protocol the curator feature implements:
backend/curation/answers.py) and rides on the prompt; a prompt without one is passed on (`NOT_ASKED`, not a
fallback). Personality changes the framing line only: the curator's words are the same at every dial position.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator
from typing import Protocol

from backend.chat.personality import WARM
from backend.chat.prompt import CuratedMatch, Prompt
from backend.chat.tiers.base import NOT_ASKED, AlwaysReady, TextDelta
from backend.settings import CuratedTierSettings
from backend.stages import Creator

NAME = "curated"
_WORD = re.compile(r"\S+\s*")


class CuratedAnswers(Protocol):
    """What the turn asks of the curator feature (backend/curation/answers.py implements it)."""

    async def match(self, question: str, *, creator: Creator | None) -> CuratedMatch | None:
        """The curated answer that fits the question, still servable now; None when none does."""
        ...

    async def served(self, match: CuratedMatch, *, message_id: str) -> None:
        """Record that this answer was served as that message (use counts, its 👍/👎)."""
        ...

    async def related(self, question: str, *, creator: Creator | None, exclude: str | None, limit: int) -> list[str]:
        """Questions other curated answers answer, on topics near this one (follow-up suggestions)."""
        ...


def framing(creator: Creator | None, weight: float) -> str:
    """The line before the curator's words; the only part the personality dial changes."""
    if creator is not None and weight >= WARM:
        return "I've answered this one myself:"
    if creator is not None:
        return f"{creator.name}'s team answered this:"
    return "A curator answered this:"


def curated_text(match: CuratedMatch, creator: Creator | None, weight: float) -> tuple[str, int]:
    """The whole answer and where the curator's words start in it (what the citations mark curator-verified)."""
    lead = framing(creator, weight)
    return f"{lead} {match.text}", len(lead) + 1


class CuratedTier(AlwaysReady):
    kind = NAME

    def __init__(self, settings: CuratedTierSettings | None = None) -> None:
        self.settings = settings or CuratedTierSettings(name=NAME)
        self.name = self.settings.name

    def skip_reason(self, prompt: Prompt) -> str | None:
        return None if prompt.curated is not None else NOT_ASKED

    async def stream(self, prompt: Prompt) -> AsyncGenerator[TextDelta, None]:
        if prompt.curated is None:  # the cascade never asks (skip_reason); a direct caller gets nothing
            return
        text, _ = curated_text(prompt.curated, prompt.creator, prompt.personality_weight)
        for word in _WORD.findall(text):
            yield TextDelta(text=word)
            await asyncio.sleep(0)  # other streams share the loop fairly
        yield TextDelta(text="", finish_reason="stop")

    async def aclose(self) -> None:
        return None


def verified_citations(citations: list[dict[str, object]], body_start: int) -> list[dict[str, object]]:
    """The claim check of a curated answer as stored and sent: the framing line states nothing, and every sentence of
    the curator's words is curator-verified (so supported), its quote kept where the linked sources state it."""
    marked = []
    for citation in citations:
        start = citation.get("start")
        if isinstance(start, int) and start >= body_start:
            marked.append({**citation, "supported": True, "claim": True, "verified": True})
        else:
            marked.append({**citation, "supported": True, "claim": False})
    return marked
