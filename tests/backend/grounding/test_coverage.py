"""Coverage: a question naming something no retrieved source mentions is not covered, however close its words."""

from __future__ import annotations

import pytest

from backend.grounding.coverage import assess, named, unmentioned
from backend.grounding.sentences import SentenceVectors
from backend.retrieval.embedder import Embedder
from backend.stages import Creator
from tests.backend.chat.helpers import hit

MANUAL = [
    hit(1, "Large files are kept in the object store like any other file; repack them to save space.", creator="m"),
    hit(2, "Run gitlet repack --window=50 to pack large files more tightly.", creator="m"),
]


@pytest.fixture(scope="module")
def vectors(shared_embedder: Embedder) -> SentenceVectors:
    return SentenceVectors(shared_embedder)


def test_names_are_acronyms_capitalised_words_and_code() -> None:
    assert named("How do I set up Gitlet LFS for large files?", None) == ["LFS", "Gitlet"]
    assert named("What does --window=50 change in /etc/gitlet.conf?", None) == ["--window=50", "/etc/gitlet.conf"]
    assert named("How do I repack large files?", None) == []
    # What people write in capitals is no name: "OK" asks about nothing the sources must mention.
    assert named("Is it OK to export my database password for cron?", None) == []
    # The scoped creator's own name is not a topic.
    assert named("What does Hazel say about WireGuard?", Creator(slug="hazel", name="Hazel")) == ["WireGuard"]


def test_a_name_counts_as_mentioned_in_any_spelling_of_its_word() -> None:
    assert unmentioned(["Repacks", "--window=50", "LFS"], MANUAL) == ["LFS"]


def test_an_unmentioned_name_is_not_covered_however_close_the_words(vectors: SentenceVectors) -> None:
    question = "How do I store large files with Gitlet LFS?"
    close = assess(question, search_query=question, hits=MANUAL, creator=None, vectors=vectors)
    assert not close.covered
    asked = "How do I pack large files more tightly?"
    assert assess(asked, search_query=asked, hits=MANUAL, creator=None, vectors=vectors).covered
