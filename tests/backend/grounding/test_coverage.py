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
    # A setting given with a value is named by the setting: the value is the asker's ("?page=2" in a URL).
    assert named("What does --window=50 change in /etc/gitlet.conf?", None) == ["--window", "/etc/gitlet.conf"]
    assert named("How do I read query values such as ?page=2?", None) == ["page"]
    assert named("How do I repack large files?", None) == []
    # What people write in capitals is no name: "OK" asks about nothing the sources must mention.
    assert named("Is it OK to export my database password for cron?", None) == []
    # The scoped creator's own name is not a topic.
    assert named("What does Hazel say about WireGuard?", Creator(slug="hazel", name="Hazel")) == ["WireGuard"]
    # Capitalised words joined by hyphens are one name, and so is a word of letters and digits; lower-case hyphenated
    # words ("remember-me", "pre-push", "built-in") are words.
    assert named("How do I set remember-me cookies with Gitlet-Login?", None) == ["Gitlet", "Gitlet-Login"]
    assert named("Can I hash passwords with Argon2 or store ext4 images?", None) == ["Argon2", "ext4"]
    assert named("Which arguments does the pre-push hook get?", None) == []


def test_a_name_counts_as_mentioned_in_any_spelling_of_its_word() -> None:
    assert unmentioned(["Repacks", "--window", "LFS"], MANUAL) == ["LFS"]
    # A compound is mentioned only whole: "Gitlet" is, "Gitlet-Login" is not.
    assert unmentioned(["Gitlet", "Gitlet-Login", "repack"], MANUAL) == ["Gitlet-Login"]


def test_a_key_combination_is_one_name_in_any_of_its_spellings() -> None:
    terminal = [hit(1, "The only characters translated are ^C and ^D into interrupts.", creator="m")]
    assert named("When someone presses Ctrl-C, what exit status do I get?", None) == ["Ctrl-C"]
    assert unmentioned(["Ctrl-C"], terminal) == []
    assert unmentioned(["Control+D"], terminal) == []
    assert unmentioned(["Ctrl-X"], terminal) == ["Ctrl-X"]
    assert unmentioned(["Alt+F4"], [hit(1, "Press alt-f4 to close the window.", creator="m")]) == []
    # A modifier's word in a word of its own is no key: "control-flow" is a word, as "remember-me" is.
    assert named("How does control-flow work when I press Shift-Tab?", None) == ["Shift-Tab"]


def test_names_listed_together_are_alternatives() -> None:
    """ "... on Windows, macOS and Linux?": sources that cover Windows and Linux cover the question; a list none of
    whose names the sources mention is still missing, and so is a name outside the list."""
    folders = [hit(1, "On Windows the folder roams; on Linux it is ~/.config/app.", creator="m")]
    asked = "Where do I keep settings on Windows, macOS and Linux?"
    assert unmentioned(named(asked, None), folders, question=asked) == []
    other = "Where do I keep settings on FreeBSD or Solaris with Gitlet?"
    assert unmentioned(named(other, None), folders, question=other) == ["FreeBSD", "Solaris", "Gitlet"]
    apart = "Does macOS keep settings where Linux does?"
    assert unmentioned(named(apart, None), folders, question=apart) == ["macOS"]


def test_an_unmentioned_name_is_not_covered_however_close_the_words(vectors: SentenceVectors) -> None:
    question = "How do I store large files with Gitlet LFS?"
    close = assess(question, search_query=question, hits=MANUAL, creator=None, vectors=vectors)
    assert not close.covered
    asked = "How do I pack large files more tightly?"
    assert assess(asked, search_query=asked, hits=MANUAL, creator=None, vectors=vectors).covered


def test_a_count_no_close_sentence_states_is_not_covered(vectors: SentenceVectors) -> None:
    """ "How many developers voted in the last election?" over sources on the election that state no figure: the
    topic is there, the count is not. The same sources with the figure answer it; "how often" is answered in words."""
    elections = [
        hit(
            1, "Developers annually elect a leader to represent them in meetings and coordinate the teams.", creator="d"
        ),
        hit(2, "The project secretary organises the votes of the elections and counts the ballots.", creator="d"),
    ]
    asked = "How many developers voted in the last leader election?"
    without = assess(asked, search_query=asked, hits=elections, creator=None, vectors=vectors)
    assert without.confidence >= 0.38 and not without.covered, without  # past the threshold, yet no count
    counted = [*elections, hit(3, "In the last leader election 367 developers voted.", creator="d")]
    assert assess(asked, search_query=asked, hits=counted, creator=None, vectors=vectors).covered
    often = "How often do developers elect a leader?"
    assert assess(often, search_query=often, hits=elections, creator=None, vectors=vectors).covered


def test_a_count_is_an_amount_in_figures_or_words_however_close_the_topic(vectors: SentenceVectors) -> None:
    """A count question whose closest sentences are on its very topic, but state no amount, is not covered however
    close they come; an amount in words ("twice", "a pinch") is an amount."""
    folding = [
        hit(1, "Folding the dough during bulk fermentation builds its strength and structure.", creator="d"),
        hit(2, "Each fold of the dough stretches a side of it up and over the rest.", creator="d"),
    ]
    asked = "How many times should I fold the dough during bulk fermentation?"
    without = assess(asked, search_query=asked, hits=folding, creator=None, vectors=vectors)
    assert without.confidence >= 0.5 and not without.covered, without  # a close match, yet no count
    for said in ("Fold the dough twice during bulk fermentation.", "Fold the dough a few times during bulk."):
        with_it = [*folding, hit(3, said, creator="d")]
        assert assess(asked, search_query=asked, hits=with_it, creator=None, vectors=vectors).covered, said


def test_a_question_telling_its_situation_first_is_held_to_a_lower_threshold(vectors: SentenceVectors) -> None:
    """A long question (its situation, then what it asks) is further in meaning from any one sentence than its
    question alone: past 14 words the threshold drops, by 0.06 at most. A short question is held to the threshold."""
    long = (
        "I set up the gitlet store last week and the packs on my laptop keep growing every single day. "
        "How do I pack large files more tightly?"
    )
    short = "How do I pack large files more tightly?"
    for question, lowered in ((long, True), (short, False)):
        confidence = assess(question, search_query=question, hits=MANUAL, creator=None, vectors=vectors).confidence
        raised = assess(
            question, search_query=question, hits=MANUAL, creator=None, vectors=vectors, threshold=confidence + 0.03
        )
        assert raised.covered is lowered, (question, confidence)
        beyond = assess(
            question, search_query=question, hits=MANUAL, creator=None, vectors=vectors, threshold=confidence + 0.07
        )
        assert not beyond.covered  # never lowered by more than 0.06


def test_a_question_naming_code_the_sources_mention_is_held_to_a_lower_threshold(vectors: SentenceVectors) -> None:
    """A name written as code ("--window=50") that a source mentions is the asked thing, found: the threshold drops by
    0.1 for it. The same question without the name is held to the threshold, and with a name no source mentions it is
    not covered at all."""
    named_code = "How do I make the packing look further back, with --window=50?"
    plain = "How do I make the packing look further back?"
    for question, lowered in ((named_code, True), (plain, False)):
        confidence = assess(question, search_query=question, hits=MANUAL, creator=None, vectors=vectors).confidence
        raised = assess(
            question, search_query=question, hits=MANUAL, creator=None, vectors=vectors, threshold=confidence + 0.08
        )
        assert raised.covered is lowered, (question, confidence)
    absent = "How do I make the packing look further back, with --depth=50?"
    assert not assess(absent, search_query=absent, hits=MANUAL, creator=None, vectors=vectors, threshold=0.0).covered
