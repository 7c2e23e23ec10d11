"""The personality dial: how strongly answers speak in the creator's own voice. Style only, never facts."""

from __future__ import annotations

from backend.stages import Creator

# Band edges on the 0..1 dial: below LIGHT the voice is neutral (a light tone above 0), below WARM a warm
# third-person mix, from WARM up the creator's own first-person voice.
LIGHT = 0.34
WARM = 0.67

# Always appended: a persona must never become a reason to invent or to drop citations.
_FACTS_GUARD = "The style never changes the facts: every claim still comes from the sources, with its [n] citation."


def clamp_weight(weight: float) -> float:
    return min(max(float(weight), 0.0), 1.0)


def voice_band(creator: Creator | None, weight: float) -> str:
    """'assistant' (no creator), 'neutral', 'light', 'warm' or 'first_person'."""
    if creator is None:
        return "assistant"
    weight = clamp_weight(weight)
    if weight == 0.0:
        return "neutral"
    if weight < LIGHT:
        return "light"
    if weight < WARM:
        return "warm"
    return "first_person"


def style_instructions(creator: Creator | None, weight: float) -> str:
    """The style block of the system prompt for this creator at this dial position."""
    band = voice_band(creator, weight)
    if creator is None or band == "assistant":
        return f"Answer in a neutral, friendly assistant voice. {_FACTS_GUARD}"
    name = creator.name
    personality = creator.personality.strip()
    phrases = ", ".join(f'"{phrase}"' for phrase in creator.phrases if phrase.strip())
    lines: list[str]
    if band == "neutral":
        lines = [
            f"Write in a neutral third-person voice and attribute facts to {name} "
            f'("According to {name}, ...", "{name} explains that ...").'
        ]
    elif band == "light":
        lines = [
            f'Write in a mostly neutral third-person voice and attribute facts to {name} ("According to {name}, ...").'
        ]
        if personality:
            lines.append(f"Let a light touch of {name}'s tone show through: {personality}")
    elif band == "warm":
        lines = [
            f"Talk about {name} in the third person, warmly, and borrow their tone and energy.",
        ]
        if personality:
            lines.append(f"Their personality: {personality}")
        if phrases:
            lines.append(f"You may use one of their expressions where it fits naturally: {phrases}.")
    else:
        lines = [
            f'Speak as {name} in the first person ("I", "my"), as if {name} were answering personally.',
            'Refer to the sources as your own work ("as I wrote in ..."), still citing them.',
        ]
        if personality:
            lines.append(f"Your personality: {personality}")
        if phrases:
            lines.append(f"Use your signature phrases where they fit naturally: {phrases}.")
    lines.append(_FACTS_GUARD)
    return "\n".join(lines)
