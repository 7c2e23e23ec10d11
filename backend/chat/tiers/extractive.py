"""The `extractive` tier: no model; quotes the source sentences that best match the question, cited."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from backend.chat.personality import WARM
from backend.chat.prompt import Prompt
from backend.chat.tiers.base import AlwaysReady, TextDelta
from backend.settings import TierSettings
from backend.stages import Hit

_WORD = re.compile(r"\w+", re.UNICODE)
# Sentence ends: . ! ? (or a blank line) followed by space; keeps abbreviations mostly intact.
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n")
_STOPWORDS = frozenset(
    "a an and are as at be but by can could did do does for from had has have how i if in into is it its "
    "me my of on or our so than that the their them then there these they this to was we were what when "
    "where which who whom why will with would you your about does should tell explain".split()
)
_MAX_SENTENCES = 3
_MAX_SENTENCE_CHARS = 400


@dataclass(frozen=True, slots=True)
class _Sentence:
    source: int  # 1-based citation number
    order: int  # position across all sources, for stable ties
    text: str


def _terms(text: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOPWORDS and len(w) > 1}


def _sentences(sources: Sequence[Hit]) -> list[_Sentence]:
    found: list[_Sentence] = []
    for number, hit in enumerate(sources, start=1):
        for piece in _SENTENCE.split(hit.text):
            piece = " ".join(piece.split())
            if len(piece) >= 12:
                found.append(_Sentence(number, len(found), piece[:_MAX_SENTENCE_CHARS]))
    return found


def select_sentences(question: str, sources: Sequence[Hit], *, limit: int = _MAX_SENTENCES) -> list[_Sentence]:
    """Best sentences by IDF-weighted overlap with the question, then by source rank; in reading order."""
    sentences = _sentences(sources)
    wanted = _terms(question)
    if not sentences:
        return []
    term_sets = [_terms(s.text) for s in sentences]
    # Rare words (a name, a tool) say more about relevance than common ones.
    idf = {t: math.log(1 + len(sentences) / (1 + sum(t in ts for ts in term_sets))) for t in wanted}
    scored = [(sum(idf[t] for t in wanted & ts), s) for s, ts in zip(sentences, term_sets, strict=True)]
    best = sorted((item for item in scored if item[0] > 0), key=lambda item: (-item[0], item[1].order))
    if not best:
        # Nothing overlaps: the retriever still ranked source 1 first, so quote its opening.
        return [s for s in sentences if s.source == 1][:1]
    return sorted((s for _, s in best[:limit]), key=lambda s: s.order)


def compose_answer(prompt: Prompt) -> str:
    """The whole answer text, deterministic for a given prompt; never says more than the sources do."""
    creator = prompt.creator
    first_person = creator is not None and prompt.personality_weight >= WARM
    if not prompt.sources:
        whose = "my" if first_person else (f"{creator.name}'s" if creator else "the available")
        return f"Sorry, I couldn't find anything about this in {whose} content."
    picked = select_sentences(prompt.question, prompt.sources)
    if first_person:
        lead = "Here is what I wrote about it:"
    elif creator is not None:
        lead = f"Here is what {creator.name}'s content says:"
    else:
        lead = "Here is what the sources say:"
    quoted = " ".join(f"{s.text} [{s.source}]" for s in picked)
    return f"{lead} {quoted}"


class ExtractiveTier(AlwaysReady):
    kind = "extractive"

    def __init__(self, settings: TierSettings) -> None:
        self.name = settings.name
        self.settings = settings

    async def stream(self, prompt: Prompt) -> AsyncGenerator[TextDelta, None]:
        words = re.findall(r"\S+\s*", compose_answer(prompt))
        for word in words:
            yield TextDelta(text=word)
            # Yield control between words so many extractive streams share the loop fairly.
            await asyncio.sleep(0)
        yield TextDelta(text="", finish_reason="stop")

    async def aclose(self) -> None:
        return None
