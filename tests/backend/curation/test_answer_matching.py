"""Matching a visitor's question to a curated answer's phrasings (backend/curation/answers.py), with the real model:
paraphrases fit; a question about something else never does, however close its wording (CA1)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backend.curation.answers import (
    AnswerIndex,
    EmbedQuestions,
    embed_readings,
    intent,
    judge,
    question_embedder,
    read,
)
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


def fits(embed: EmbedQuestions, question: str, phrasing: str, creator: Creator | None = HAZEL) -> bool:
    asked, written = read(question, creator), read(phrasing, creator)
    verdict = judge(
        asked, embed_readings(embed, [asked])[0], written, embed_readings(embed, [written])[0], embed,
        penalty=DEFAULTS.substitution_penalty, floor=DEFAULTS.match_threshold,
    )  # fmt: skip
    return verdict.refused is None and verdict.score >= DEFAULTS.match_threshold


def answer(answer_id: str, creator: str | None, *questions: str) -> CuratedView:
    now = datetime.now(UTC)
    return CuratedView(
        id=answer_id, creator=creator, version=1, questions=list(questions), answer="…", documents=[], topic_id=None,
        created_at=now, updated_at=now, retired_at=None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("question", "phrasing"),
    [
        ("How much yeast does Hazel put in her dough?", "How much salt does Hazel put in her dough?"),
        ("how much yeast", "how much salt"),
        ("How much sugar goes in the dough?", "How much salt goes in the dough?"),
        ("How long does the dough rest in the fridge?", "How long does the starter rest in the fridge?"),
        ("What temperature does Hazel bake her rye at?", "What temperature does Hazel bake her baguettes at?"),
        ("What flour does Hazel use for pizza?", "What flour does Hazel use for focaccia?"),
        ("How do I store a starter?", "How do I store a loaf?"),
        ("When do I add the seeds?", "When do I add the salt?"),
        ("How much salt for a 1 kg loaf?", "How much salt for a 500 g loaf?"),  # the numbers must agree
        ("When does Hazel add the salt?", "How much salt does Hazel add?"),  # when is not how much
        ("Why is it called the Quillfield fold?", "How do you do the Quillfield fold?"),
        ("What hydration does Tomás suggest for home cooks?", "What hydration does Tomás run his house loaf at?"),
    ],
)
def test_ca1_a_question_about_something_else_never_fits(embed: EmbedQuestions, question: str, phrasing: str) -> None:
    assert not fits(embed, question, phrasing, TOMAS if "Tomás" in question else HAZEL)


@pytest.mark.parametrize(
    ("question", "phrasing"),
    [
        ("How long can the starter stay in the refrigerator?", "How long can the starter stay in the fridge?"),
        ("How much salt goes into Hazel's dough?", "How much salt does Hazel add to her dough?"),
        ("What's the ideal hydration for a beginner?", "What hydration should a beginner start with?"),
        ("Is tap water with chlorine bad for the starter?", "Is chlorinated tap water harmful for the starter?"),
        ("What percentage of salt goes into Hazel's bread?", "How much salt does Hazel put in her dough?"),
        ("Why would a starter smell like nail varnish?", "What does it mean when my starter smells like nail varnish?"),
        # The kind of thing asked, read in technical questions: "how do I make …" asks how, not why; "how long" is a
        # length as often as a time; a clause opening with "when" is not a question of when.
        ("How do I make a symlink instead of a hard link?", "How do I create a symbolic link rather than a hard link?"),
        ("How can I sign a tag with my GPG key?", "How do I make a GPG-signed tag?"),
        ("What's a good password length?", "How long should a good password be?"),
        (
            "What is an object name in git and what's its length?",
            "What are object names in git, and how long are they?",
        ),
    ],
)
def test_ca1_a_paraphrase_fits(embed: EmbedQuestions, question: str, phrasing: str) -> None:
    assert fits(embed, question, phrasing)


@pytest.mark.parametrize(
    ("question", "asks"),
    [
        ("How much salt does Hazel use?", {"amount"}),
        ("What percentage of salt does Inês use?", {"amount"}),
        ("When does Hazel add the salt?", {"when"}),
        ("How long is the cold retard, and how cold?", {"duration", "length", "temperature"}),
        ("How long should a good password be?", {"duration", "length"}),
        ("How many characters should a password have?", {"amount", "length"}),
        ("What's a good password length?", {"length"}),
        ("How old must loose objects be before gc prunes them?", {"age"}),
        ("Why is it called the Quillfield fold?", {"origin"}),
        ("What is the Quillfield fold?", {"definition"}),
        ("How do I wake a starter up?", {"howto"}),
        ("How do I work out what water temperature I need?", {"temperature"}),
        ("How often do new stable releases come out?", {"frequency"}),
        ("Does Hazel trust the float test?", {"yesno"}),
        ("How do I make a GPG-signed tag?", {"howto"}),
        ("How does the salt make the dough tighter?", {"reason"}),
        ("When finding the MTU with ping, how many bytes do I add?", {"amount", "length"}),
        ("Which command shows a package's version and where it comes from?", {"other"}),
        ("Where does Hazel keep her starter?", {"place"}),
    ],
)
def test_the_kind_of_thing_asked(question: str, asks: set[str]) -> None:
    assert intent(question) == asks


def test_an_answer_serves_its_creator_and_an_answer_for_all_serves_everyone(embed: EmbedQuestions) -> None:
    index = AnswerIndex(
        [
            answer("hazel-salt", "hazel-marsh", "How much salt does Hazel put in her dough?"),
            answer("fold", None, "What is the Quillfield fold?"),
        ],
        embed,
    )
    settings = {"threshold": DEFAULTS.match_threshold, "penalty": DEFAULTS.substitution_penalty}
    salt = index.best("How much salt goes into Hazel's bread dough?", HAZEL, **settings)
    assert salt is not None and salt.answer.id == "hazel-salt"
    assert index.best("How much salt goes into the bread dough?", TOMAS, **settings) is None  # another creator's
    assert index.best("How much salt goes into the bread dough?", None, **settings) is None  # asked of no creator
    for creator in (HAZEL, TOMAS, None):
        fold = index.best("Can you explain the Quillfield fold?", creator, **settings)
        assert fold is not None and fold.answer.id == "fold"
    assert index.best("How much yeast goes into Hazel's bread dough?", HAZEL, **settings) is None
    assert index.related("When does Hazel add the salt to her dough?", HAZEL, exclude=None, below=0.99) == [
        "How much salt does Hazel put in her dough?"
    ]
