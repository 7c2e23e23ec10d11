"""The sentence after a pick that completes it (leaning.completed_by): here, one going on from the pick to state what
was asked."""

from __future__ import annotations

from backend.grounding.leaning import completed_by
from backend.grounding.question import read_question
from backend.grounding.quotable import quotable

# Made up: a scene set in one sentence, the asked fact stated in the next, which leans on it ("In this case").
SPOOL = (
    "Widgets are written to the spool as they arrive. When the spool is archived, its widgets are packed into one "
    "file instead. In this case the archive also uses zstd-19 as its compression. Archives are kept for a week."
)


def _pairs() -> list[tuple[str, str | None]]:
    read = quotable(SPOOL, "Spool", "widgetd")
    return [(r.span.text, n.span.text if n else None) for r, n in zip(read, [*read[1:], None], strict=True)]


def test_a_sentence_going_on_to_state_the_asked_fact_completes_the_pick() -> None:
    read = quotable(SPOOL, "Spool", "widgetd")
    scene, fact = read[1], read[2]
    assert fact.span.text.startswith("In this case"), _pairs()
    asked = read_question("Which compression does an archived spool use?", creator=None)
    assert completed_by(asked, scene, fact.span) == fact.span


def test_a_leaning_sentence_without_a_new_asked_word_or_a_fact_does_not() -> None:
    read = quotable(SPOOL, "Spool", "widgetd")
    scene, fact, after = read[1], read[2], read[3]
    # Nothing asked that the pick lacks: the pick says it already.
    packed = read_question("Are archived widgets packed into one file?", creator=None)
    assert completed_by(packed, scene, fact.span) is None
    # A sentence that does not lean on the pick ("Archives are kept for a week.") goes its own way.
    kept = read_question("How long are archives kept?", creator=None)
    assert completed_by(kept, fact, after.span) is None
    # It leans and has a word asked, but states no fact (no code, no quantity): not brought along.
    signed = quotable(
        "When the spool is archived, its widgets are packed into one file instead. In this case the archive is also "
        "signed.",
        "Spool",
        "widgetd",
    )
    asked = read_question("Is an archived spool signed as well?", creator=None)
    assert completed_by(asked, signed[0], signed[1].span) is None
