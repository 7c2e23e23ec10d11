"""The coverage check of a question asked again over the same sources is looked up, not computed again."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from backend.grounding import answer_checks
from backend.grounding.answer_checks import AnswerChecks
from backend.grounding.coverage import assess
from backend.grounding.sentences import SentenceVectors
from backend.retrieval.embedder import Embedder
from backend.stages import Creator, Hit

QUESTION = "How long should the dough proof in the fridge?"
SOURCE = (
    "Proof the shaped dough in the fridge for 12 to 16 hours. A cold proof slows the yeast and deepens the flavour. "
    "Bake straight from the fridge at 250°C."
)


def source(text: str = SOURCE, chunk_id: str = "c1") -> Hit:
    return Hit(
        chunk_id=chunk_id,
        creator="baker",
        document_id="baker/proof.md",
        source="proof.md",
        title="Proofing",
        url=None,
        text=text,
        score=0.9,
    )


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the real check ran."""
    runs: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        runs.append(1)
        return assess(*args, **kwargs)

    monkeypatch.setattr(answer_checks, "assess", counting)
    return runs


async def test_the_same_question_over_the_same_sources_is_checked_once(
    shared_embedder: Embedder, counted: list[int]
) -> None:
    checks = AnswerChecks(SentenceVectors(shared_embedder))
    hits = [source()]
    first = await checks.coverage(question=QUESTION, search_query=QUESTION, hits=hits, creator=None)
    again = await checks.coverage(question=QUESTION, search_query=QUESTION, hits=[source()], creator=None)
    assert first.covered and again == first
    assert len(counted) == 1
    fresh = assess(QUESTION, search_query=QUESTION, hits=hits, creator=None, vectors=checks.vectors)
    assert fresh == first  # what is looked up is what the check gives


async def test_anything_the_check_reads_makes_it_run_again(shared_embedder: Embedder, counted: list[int]) -> None:
    checks = AnswerChecks(SentenceVectors(shared_embedder))
    await checks.coverage(question=QUESTION, search_query=QUESTION, hits=[source()], creator=None)
    rewritten = source("The flat white is a coffee drink with steamed milk.")  # the same chunk id, re-ingested
    changed = await checks.coverage(question=QUESTION, search_query=QUESTION, hits=[rewritten], creator=None)
    assert not changed.covered
    baker = Creator(slug="baker", name="Dough Proof")
    await checks.coverage(question=QUESTION, search_query=QUESTION, hits=[source()], creator=baker)
    follow_up = f"What about rye? {QUESTION}"
    await checks.coverage(question=QUESTION, search_query=follow_up, hits=[source()], creator=None)
    await checks.coverage(
        question=QUESTION, search_query=QUESTION, hits=[source(), source(chunk_id="c2")], creator=None
    )
    assert len(counted) == 5
    renamed = dataclasses.replace(baker, name="Someone Else")
    await checks.coverage(question=QUESTION, search_query=QUESTION, hits=[source()], creator=renamed)
    assert len(counted) == 6
