"""Builds the configured tiers, in cascade order, from settings."""

from __future__ import annotations

from backend.chat.tiers.base import Tier
from backend.chat.tiers.curated import CuratedTier
from backend.chat.tiers.extractive import ExtractiveTier
from backend.chat.tiers.llama_cpp_tier import LlamaCppTier
from backend.chat.tiers.openai_tier import OpenAITier
from backend.grounding.sentences import SentenceVectors
from backend.settings import LlamaCppTierSettings, LLMSettings, OpenAITierSettings, TierSettings


def build_tier(settings: TierSettings, *, vectors: SentenceVectors | None = None) -> Tier:
    if isinstance(settings, OpenAITierSettings):
        return OpenAITier(settings)
    if isinstance(settings, LlamaCppTierSettings):
        return LlamaCppTier(settings)
    return ExtractiveTier(settings, vectors=vectors)


def build_tiers(settings: LLMSettings, *, vectors: SentenceVectors | None = None, curated: bool = False) -> list[Tier]:
    """One tier per `llm.tiers` entry, same order, after the curated tier when `curated` (it answers only the
    questions a curated answer fits). Nothing heavy happens here: models load on first use (or in `warm()`), HTTP
    connections open on the first call."""
    first: list[Tier] = [CuratedTier()] if curated else []
    return first + [build_tier(tier, vectors=vectors) for tier in settings.tiers]
