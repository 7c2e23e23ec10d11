"""Answer generators behind one contract (base.Tier); the cascade tries them in order."""

from backend.chat.tiers.base import TextDelta, Tier, TierError, TokenUsage
from backend.chat.tiers.factory import build_tier, build_tiers

__all__ = ["TextDelta", "Tier", "TierError", "TokenUsage", "build_tier", "build_tiers"]
