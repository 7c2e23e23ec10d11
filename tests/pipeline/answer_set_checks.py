"""What every shipped answer set must be (issue 37), checked against its built corpus: the Debian sets'
(`test_eval_debdocs.py`) and the PostgreSQL manual's (`test_eval_pgdocs.py`)."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.eval_answers import Question, load_questions, turn_count
from pipeline.eval_data import load_content

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
