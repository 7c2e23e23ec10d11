"""What every shipped answer set must be (issue 37), checked against its built corpus, and the extractive tier's
floors on it: the Debian sets' (`test_eval_debdocs.py`), the PostgreSQL manual's (`test_eval_pgdocs.py`) and the
Flask and Click sites' as published (`test_eval_published.py`)."""

from __future__ import annotations

import re
from pathlib import Path

import anyio

from backend.settings import RetrievalSettings
from pipeline.eval_answers import Question, load_questions, run_questions, summarize, turn_count
from pipeline.eval_answers_cli import indexed_settings
from pipeline.eval_data import load_content
from tests.backend.api.harness import Backend, extractive_tier, make_settings

_SECOND_PERSON = re.compile(r"\b(you|your)\b", re.IGNORECASE)


def turns_of(question: Question) -> list[tuple[Question, Question | None]]:
    """Each turn of a question's chain with the turn before it (None for the first)."""
    out: list[tuple[Question, Question | None]] = []
    previous: Question | None = None
    turn: Question | None = question
    while turn is not None:
        out.append((turn, previous))
        previous, turn = turn, turn.follow_up
    return out


def check_answer_set(answers: Path, content: Path, *, author_voice: bool) -> None:
    """At least 40 turns with unique ids, >= 10 % unanswerable, >= 5 follow-ups continuing an answerable turn of
    the same creator, >= 3 compound questions, questions to the creator in the second person where the text has
    an author's voice, and every fact stated somewhere the question can reach (its creator, if scoped)."""
    questions = load_questions(answers)  # compiles every fact pattern
    turns = [pair for question in questions for pair in turns_of(question)]
    assert turn_count(questions) == len(turns) >= 40
    assert len({q.id for q, _ in turns}) == len(turns)  # ids are unique, follow-ups included
    unanswerable = [q for q, _ in turns if q.unanswerable]
    assert len(unanswerable) >= 0.10 * len(turns), f"{len(unanswerable)} unanswerable of {len(turns)}"
    follow_ups = [(q, before) for q, before in turns if before is not None]
    assert len(follow_ups) >= 5
    for follow_up, before in follow_ups:
        # A follow-up continues an answerable turn of the same conversation, with the same creator.
        assert before is not None and not before.unanswerable, follow_up.id
        assert follow_up.creator == before.creator, follow_up.id
    assert sum(1 for q, _ in turns if len(q.facts) >= 2) >= 3  # compound questions
    if author_voice:
        assert sum(1 for q, _ in turns if q.creator and _SECOND_PERSON.search(q.question)) >= 3
    documents = load_content(content)
    text_of: dict[str | None, str] = {None: "\n".join(d.text for d in documents)}
    for creator in {d.creator for d in documents}:
        text_of[creator] = "\n".join(d.text for d in documents if d.creator == creator)
    for question, _ in turns:
        assert question.creator is None or question.creator in text_of, f"{question.id}: unknown creator"
        for fact in question.facts:
            assert re.search(fact, text_of[question.creator], re.IGNORECASE), f"{question.id}: {fact!r} in no source"


def check_answer_floors(answers: Path, content: Path, work: Path, floors: dict[str, float]) -> None:
    """The offline default (the extractive tier) on an answer set, through the service's own turn (`lorechat
    eval-answers`) over `content` indexed under `work`: no error, citation precision >= 0.95, and `floors` (fact
    recall at least, false and missed refusal rates at most)."""
    base = make_settings(
        data_dir=work / "unused", backend=Backend("embedded", "", ""), tiers=[extractive_tier()],
        retrieval=RetrievalSettings(),
    )  # fmt: skip
    results = anyio.run(run_questions, indexed_settings(base, content, work), load_questions(answers))
    figures = summarize(results)["extractive"]
    assert figures["errors"] == 0, figures
    assert figures["citation_precision"] >= 0.95, figures
    assert figures["fact_recall"] >= floors["fact_recall"], figures
    assert figures["false_refusal_rate"] <= floors["false_refusal_rate"], figures
    assert figures["missed_refusal_rate"] <= floors["missed_refusal_rate"], figures
