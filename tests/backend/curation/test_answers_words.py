"""A curated answer's own words in matching (backend/curation/answers.py), with the real model: a question whose
words the phrasing lacks but the answer uses (its text, its documents' titles) pays no substitution penalty; an
answer that merely mentions something else never takes a question about that (CA1, CA4); words compared in their
base forms; a question scored once for the match and the related answers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest

from backend.curation.answers import AnswerIndex, EmbedQuestions, question_embedder, read, terms_of
from backend.curation.answers_store import CuratedView
from backend.retrieval.embedder import Embedder
from backend.settings import CuratedSettings
from backend.stages import Creator

HAZEL = Creator(slug="hazel-marsh", name="Hazel Marsh")
TOMAS = Creator(slug="tomas-reyes", name="Chef Tomás Reyes")
DEFAULTS = CuratedSettings()


@pytest.fixture(scope="module")
def embed(shared_embedder: Embedder) -> EmbedQuestions:
    return question_embedder(shared_embedder.embed_query_full)


def answer(
    answer_id: str, phrasing: str, text: str = "…", *, titles: Sequence[str] = (), creator: str = HAZEL.slug
) -> CuratedView:
    now = datetime.now(UTC)
    return CuratedView(
        id=answer_id, creator=creator, version=1, questions=[phrasing], answer=text, documents=[], topic_id=None,
        created_at=now, updated_at=now, retired_at=None, titles=list(titles),
    )  # fmt: skip


def best(index: AnswerIndex, question: str, creator: Creator = HAZEL) -> str | None:
    fit = index.best(question, creator, threshold=DEFAULTS.match_threshold, penalty=DEFAULTS.substitution_penalty)
    return fit.answer.id if fit else None


def test_ca4_a_word_the_answer_itself_uses_costs_no_penalty(embed: EmbedQuestions) -> None:
    question = "How long can the starter be kept in the fridge without feeding?"
    phrasing = "How long can Bartholomew stay in the fridge?"
    bare = AnswerIndex([answer("fridge", phrasing)], embed)
    assert best(bare, question) is None  # "starter" and "feeding" stand where the phrasing has "Bartholomew"
    vouched = AnswerIndex(
        [answer("fridge", phrasing, "A week without feeding, at most.", titles=["Waking Up Bartholomew, My Starter"])],
        embed,
    )
    assert best(vouched, question) == "fridge"  # the answer's text and its document's title use both words


@pytest.mark.parametrize(
    ("question", "phrasing", "text"),
    [
        (
            "How much yeast does Hazel put in her dough?",
            "How much salt does Hazel put in her dough?",
            "Two percent of the flour's weight: 10 g of salt for a 500 g loaf. Add it after the yeast.",
        ),
        (
            "How much sugar goes in the dough?",
            "How much salt goes in the dough?",
            "Salt: two percent. There is no sugar in my dough.",
        ),
        (
            "What flour does Hazel use for pizza?",
            "What flour does Hazel use for focaccia?",
            "Tipo 00 for focaccia; the pizza dough is another story.",
        ),
    ],
)
def test_ca1_an_answer_that_mentions_another_thing_never_takes_its_question(
    embed: EmbedQuestions, question: str, phrasing: str, text: str
) -> None:
    assert best(AnswerIndex([answer("other", phrasing, text)], embed), question) is None


def test_ca4_words_are_compared_in_their_base_forms(embed: EmbedQuestions) -> None:
    assert "feed" in terms_of("How is the levain fed?")  # an irregular form at its base
    assert "annotat" in terms_of("What makes a tag 'annotated'?")  # quotes are not part of the word
    assert "hazel" in terms_of("Is this Hazel's loaf?")  # an apostrophe inside one is
    assert "describ" in read("How can git describe use lightweight tags?", None).terms  # a command, not framing
    levain = AnswerIndex(
        [answer("ratio", "What is the levain feed ratio in Tomás's kitchen?", creator=TOMAS.slug)], embed
    )
    assert best(levain, "How is the levain fed, in what ratio?", TOMAS) == "ratio"


def test_a_question_is_scored_once_for_its_match_and_its_related_answers(embed: EmbedQuestions) -> None:
    calls: list[int] = []

    def counting(texts: Sequence[str]) -> np.ndarray:
        calls.append(len(texts))
        return embed(texts)

    answers = [
        answer("salt", "How much salt does Hazel put in her dough?"),
        answer("forget", "What happens if I forget the salt?"),
        answer("slow", "Does salt slow the yeast down?"),
        answer("fold", "How do you do the Quillfield fold?"),
    ]
    index = AnswerIndex(answers, counting)
    index.warm([HAZEL])
    question = "How much salt should I add to the dough?"
    assert best(index, question) == "salt"
    embedded = len(calls)
    related = index.related(question, HAZEL, exclude="salt", below=DEFAULTS.match_threshold)
    assert len(calls) == embedded  # the related answers reuse the question as the match read it
    fresh = AnswerIndex(answers, embed).related(question, HAZEL, exclude="salt", below=DEFAULTS.match_threshold)
    assert related == fresh and "What happens if I forget the salt?" in related
    assert "How do you do the Quillfield fold?" not in related
