"""The personality dial changes the voice only: never the sources, their numbering or the rules."""

from __future__ import annotations

import pytest

from backend.chat.personality import style_instructions, voice_band
from backend.chat.prompt import build_prompt
from tests.backend.chat.helpers import ADA, hit


@pytest.mark.parametrize(
    ("weight", "band"),
    [(0.0, "neutral"), (0.2, "light"), (0.34, "warm"), (0.5, "warm"), (0.67, "first_person"), (1.0, "first_person")],
)
def test_bands(weight: float, band: str) -> None:
    assert voice_band(ADA, weight) == band


def test_weight_zero_is_neutral_third_person_attribution() -> None:
    text = style_instructions(ADA, 0.0)
    assert "According to Ada Lovelace" in text
    assert "first person" not in text and "Let's crank the engine!" not in text


def test_weight_one_is_the_creators_first_person_voice() -> None:
    text = style_instructions(ADA, 1.0)
    assert "Speak as Ada Lovelace in the first person" in text
    assert ADA.personality in text
    assert '"Let\'s crank the engine!"' in text and '"Numbers are poetry."' in text


def test_middle_blends_tone_without_first_person() -> None:
    text = style_instructions(ADA, 0.5)
    assert "third person" in text and ADA.personality in text
    assert "first person" not in text


def test_out_of_range_weights_are_clamped() -> None:
    assert style_instructions(ADA, -3) == style_instructions(ADA, 0.0)
    assert style_instructions(ADA, 7) == style_instructions(ADA, 1.0)


def test_without_a_creator_the_weight_is_ignored() -> None:
    assert style_instructions(None, 0.0) == style_instructions(None, 1.0)
    assert voice_band(None, 1.0) == "assistant"


def test_every_band_keeps_the_citation_rule() -> None:
    for weight in (0.0, 0.2, 0.5, 1.0):
        assert "[n] citation" in style_instructions(ADA, weight)


@pytest.mark.parametrize("context_window", [8192, 1024])
def test_sources_and_numbering_identical_across_weights(context_window: int) -> None:
    sources = [hit(n, f"Fact number {n}. " + "detail " * 150) for n in range(1, 7)]
    prompts = [
        build_prompt(
            question="What are the facts?",
            sources=sources,
            history=[("user", "Hello"), ("assistant", "Hi!")],
            creator=ADA,
            personality_weight=weight,
            context_window=context_window,
            max_tokens=256,
        )
        for weight in (0.0, 0.5, 1.0)
    ]
    # Even when the budget forces cuts, the dial never changes which sources are kept.
    assert all(p.sources == prompts[0].sources for p in prompts)
    assert all(p.messages[1:] == prompts[0].messages[1:] for p in prompts)
    systems = [p.messages[0]["content"] for p in prompts]
    assert len(set(systems)) == 3
    rules = [s.split("\n\nStyle:\n")[0] for s in systems]
    assert len(set(rules)) == 1
