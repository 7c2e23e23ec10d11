"""`lorechat doctor`: start each configured local model in its own process and report whether it works."""

from __future__ import annotations

from backend.chat.tiers.llama_cpp_tier import LlamaCppTier
from backend.settings import LlamaCppTierSettings, Settings

_SETTLE_SECONDS = 180.0


async def check_local_models(settings: Settings) -> tuple[list[str], bool]:
    """One line per llama_cpp tier, and whether all of them work. A crash stays in the child process."""
    lines: list[str] = []
    ok = True
    for tier_settings in settings.llm.tiers:
        if not isinstance(tier_settings, LlamaCppTierSettings):
            continue
        tier = LlamaCppTier(tier_settings)
        try:
            await tier.warm(wait_seconds=_SETTLE_SECONDS)
            speed = tier.process.speed
            if tier.status == "ready" and speed is not None:
                lines.append(
                    f"local model {tier.name} OK on this CPU: {tier.model_path.name} reads "
                    f"{speed.tokens_per_second:.0f} prompt tokens/s; prompts are fitted to "
                    f"{tier.prompt_budget} tokens for a first token within "
                    f"{tier_settings.first_token_target_seconds:g} s"
                )
            else:
                ok = False
                why = tier.process.problem or f"it did not start within {_SETTLE_SECONDS:.0f} s"
                lines.append(f"local model {tier.name} DISABLED on this machine: {why}")
        finally:
            await tier.aclose()
    if not lines:
        lines.append("no local model tier is configured")
    return lines, ok
