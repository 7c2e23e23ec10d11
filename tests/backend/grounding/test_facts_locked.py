"""Facts locked under the voice dial (issue 12): at personality 0, 0.5 and 1 the numbers, units and names an
answer states do not change; only the framing does. Through the real service path, extractive tier and a
scripted upstream (whose prompt must carry the same sources, so the same facts, at every weight)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from backend.grounding.facts import names, quantities
from pipeline.eval_answers import Question, run_questions
from pipeline.eval_answers_cli import indexed_settings
from tests.backend.api.harness import Backend, extractive_tier, make_settings, upstream_tier
from tests.conftest import DEMO_CONTENT
from tests.fakes import Script, ScriptedOpenAI

WEIGHTS = (0.0, 0.5, 1.0)
QUESTIONS = [
    Question("salt", "How much salt does Hazel put in her dough?", "hazel-marsh", (r"two percent",), False),
    Question("temp", "What temperature does Dr. Calloway keep her starters at?", "ines-calloway", (r"27",), False),
    Question("rest", "What is the Brassard rest?", "tomas-reyes", (r"forty",), False),
]


def facts(text: str) -> tuple[list[tuple[float, str | None]], set[str]]:
    body = text.split(":", 1)[1] if ":" in text else text  # the framing line is the dial's to change
    return sorted((q.value, q.unit) for q in quantities(body)), names(body)


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as server:
        yield server


def test_extractive_and_scripted_answers_keep_their_facts_at_every_weight(
    upstream: ScriptedOpenAI, tmp_path: Path
) -> None:
    base = make_settings(
        data_dir=tmp_path / "unused",
        backend=Backend("embedded", "", ""),
        tiers=[upstream_tier(upstream, first=10.0, idle=10.0), extractive_tier()],
    )
    settings = indexed_settings(base, DEMO_CONTENT, tmp_path)
    extractive = settings.model_copy(update={"llm": base.llm.model_copy(update={"tiers": [extractive_tier()]})})

    by_weight = {w: anyio.run(lambda w=w: run_questions(extractive, QUESTIONS, personality_weight=w)) for w in WEIGHTS}
    for position in range(len(QUESTIONS)):
        stated = {w: facts(by_weight[w][position].answer) for w in WEIGHTS}
        assert stated[0.0][0], by_weight[0.0][position].answer  # there are numbers to lock
        assert stated[0.0] == stated[0.5] == stated[1.0]
    assert by_weight[1.0][0].answer.startswith("Here is what I wrote about it:")

    # The upstream answers with the extractive text; what it is sent must hold the same sources at every weight.
    for w in WEIGHTS:
        for result in by_weight[0.0]:
            upstream.enqueue(Script(tokens=[result.answer]))
        scripted = anyio.run(lambda w=w: run_questions(settings, QUESTIONS, personality_weight=w))
        assert [r.tier for r in scripted] == ["upstream"] * len(QUESTIONS)
        assert all(c.supported for r in scripted for c in r.citations if c.claim)
    sent = [request["messages"][-1]["content"] for request in upstream.requests]
    for position in range(len(QUESTIONS)):
        per_weight = sent[position :: len(QUESTIONS)]
        assert len(per_weight) == 3 and len(set(per_weight)) == 1  # same sources, same question, any weight
