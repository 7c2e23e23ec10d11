"""The extractive tier quotes the best-matching source sentences with citations, and never invents."""

from __future__ import annotations

import re

from backend.chat.prompt import build_prompt
from backend.chat.tiers.extractive import ExtractiveTier, compose_answer
from backend.settings import ExtractiveTierSettings
from tests.backend.chat.helpers import ADA, hit

SOURCES = [
    hit(1, "Ada wrote the first published program. It computed Bernoulli numbers for the engine."),
    hit(2, "The engine reads punched cards, an idea borrowed from the Jacquard loom. Cards hold operations."),
    hit(3, "Babbage never finished building the analytical engine in his lifetime."),
]


def prompt_for(question: str, *, sources=SOURCES, creator=ADA, weight: float = 0.0):
    return build_prompt(
        question=question,
        sources=sources,
        history=[],
        creator=creator,
        personality_weight=weight,
        context_window=4096,
        max_tokens=256,
    )


async def collect(prompt) -> tuple[list[str], str | None]:
    tier = ExtractiveTier(
        ExtractiveTierSettings(
            name="extractive",
        )
    )
    texts, finish = [], None
    async for delta in tier.stream(prompt):
        texts.append(delta.text)
        finish = delta.finish_reason or finish
    return texts, finish


async def test_answers_with_the_matching_sentence_and_its_citation() -> None:
    texts, finish = await collect(prompt_for("Where did the punched cards idea come from?"))
    answer = "".join(texts)

    assert "an idea borrowed from the Jacquard loom. [2]" in answer
    assert answer.startswith("Here is what Ada Lovelace's content says:")
    assert finish == "stop"
    assert len([t for t in texts if t]) > 5  # streamed word by word


async def test_every_quoted_sentence_comes_from_its_cited_source() -> None:
    prompt = prompt_for("Who computed Bernoulli numbers and who built the engine?")
    answer = compose_answer(prompt)
    quoted = re.findall(r"([^:\]]+?) \[(\d)\]", answer)
    assert quoted
    for sentence, number in quoted:
        assert sentence.strip() in prompt.sources[int(number) - 1].text


def test_is_deterministic() -> None:
    prompt = prompt_for("What did Babbage build?")
    assert compose_answer(prompt) == compose_answer(prompt)
    assert "[3]" in compose_answer(prompt)


def test_without_sources_it_says_it_found_nothing() -> None:
    assert compose_answer(prompt_for("Anything?", sources=[])) == (
        "Sorry, I couldn't find anything about this in Ada Lovelace's content."
    )
    assert "my content" in compose_answer(prompt_for("Anything?", sources=[], weight=1.0))
    assert "the available content" in compose_answer(prompt_for("Anything?", sources=[], creator=None))


def test_first_person_at_full_weight_same_citations() -> None:
    neutral = compose_answer(prompt_for("Where did the punched cards idea come from?"))
    personal = compose_answer(prompt_for("Where did the punched cards idea come from?", weight=1.0))
    assert personal.startswith("Here is what I wrote about it:")
    assert neutral.split(":", 1)[1] == personal.split(":", 1)[1]


def test_no_overlap_quotes_the_top_source_opening() -> None:
    answer = compose_answer(prompt_for("zzz qqq?"))
    assert answer.endswith("Ada wrote the first published program. [1]")
