"""The inbox counts real gaps only: the extractive tier's answer signals a gap only when a configured model tier came
before it (and so failed or was skipped), never on the embedded defaults where it answers everything (CA9)."""

from __future__ import annotations

from backend.curation.gaps import extractive_tier_names
from backend.settings import ExtractiveTierSettings, LlamaCppTierSettings, LLMSettings, OpenAITierSettings, Settings


def _tiers(*tiers: object) -> Settings:
    return Settings(llm=LLMSettings(tiers=list(tiers)))  # type: ignore[arg-type]


def test_ca9_the_extractive_tier_signals_a_gap_only_behind_a_model_tier() -> None:
    extractive = ExtractiveTierSettings(name="extractive")
    hosted = OpenAITierSettings(name="hosted", base_url="https://llm.example/v1", model="m")
    local = LlamaCppTierSettings(name="local")
    assert extractive_tier_names(Settings()) == []  # the embedded defaults: extractive alone
    assert extractive_tier_names(_tiers(extractive)) == []
    assert extractive_tier_names(_tiers(hosted, extractive)) == ["extractive"]
    assert extractive_tier_names(_tiers(local, extractive)) == ["extractive"]
    first = ExtractiveTierSettings(name="quotes")
    assert extractive_tier_names(_tiers(first, hosted, extractive)) == ["extractive"]  # only the one behind a model
