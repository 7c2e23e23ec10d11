"""Reading a question (backend/grounding/question.py, terms.py): the parts a compound question or a comparison
splits into, and the words it is read by."""

from __future__ import annotations

from backend.grounding.question import FactKind, counterparts, question_parts, read_question
from backend.grounding.terms import content_terms, stem


def test_a_how_is_a_different_from_b_question_splits_into_its_two_sides() -> None:
    """ "How is A different from B?" is a comparison as much as "the difference between A and B"."""
    assert question_parts("How is apt full-upgrade different from apt upgrade?") == ["apt full-upgrade", "apt upgrade"]
    assert question_parts("How does git stash pop differ from git stash apply?") == ["git stash pop", "git stash apply"]
    assert question_parts("What distinguishes a hard link from a symbolic link?") == ["a hard link", "a symbolic link"]
    assert question_parts("How do dpkg -r and dpkg -P differ?") == ["dpkg -r", "dpkg -P"]
    assert question_parts("How is the weather in Lisbon?") == ["How is the weather in Lisbon?"]


def test_an_auxiliary_without_a_subject_after_and_joins_two_verbs_not_two_questions() -> None:
    """ "... cannot be tested and should be skipped?" is one question; "..., and should I ...?" starts a second."""
    one = "Which exit code means the commit cannot be tested and should be skipped?"
    assert question_parts(one) == [one]
    assert question_parts("Is it safe and does it keep my files?") == ["Is it safe", "does it keep my files?"]
    assert question_parts("What flour does she use, and how long does she ferment it?") == [
        "What flour does she use",
        "how long does she ferment it?",
    ]
    # After a comma an auxiliary opens a question whatever its subject, unless it opens a passive.
    assert question_parts("Which inputs does a boolean column accept, and does capitalisation matter?") == [
        "Which inputs does a boolean column accept",
        "does capitalisation matter?",
    ]
    passive = "Which commits are broken, and should be skipped?"
    assert question_parts(passive) == [passive]


def test_a_how_to_question_asking_for_two_doings_splits_into_both_with_its_opening() -> None:
    """ "How do I A and accept them ...?": a verb with what it acts on after "and" is a second goal, asked the way the
    first is; two verbs of one goal ("create and push a tag"), a denial ("and not a revision") or a side with too
    few words of its own stay one question."""
    assert question_parts("How do I limit an option to a few allowed values and accept them in any letter case?") == [
        "How do I limit an option to a few allowed values",
        "How do I accept them in any letter case",
    ]
    assert question_parts("How can I rebase my branch and push it to the remote?") == [
        "How can I rebase my branch",
        "How can I push it to the remote",
    ]
    for one in (
        "How do I create and push a tag?",
        "How do I tell git that an argument is a path and not a revision?",
        "How do I stop it and start it?",
        "How do I copy the whole directory and all the files in it?",
        "What does it print and why?",
    ):
        assert question_parts(one) == [one]


def test_a_situation_told_first_belongs_to_no_part() -> None:
    """The parts of "<situation>. How long ..., and which ...?" are the two questions; the situation is the context
    each part is read with, not the first part's own words. A question that does not split stays whole."""
    asked = (
        "A session stuck behind a lock waits a little before the server checks for a deadlock. How long is that wait "
        "by default, and which setting changes it?"
    )
    assert question_parts(asked) == ["How long is that wait by default", "which setting changes it?"]
    one = "My build broke. Which commit broke it?"
    assert question_parts(one) == [one]
    assert question_parts("My disk filled up. What is the difference between a hard link and a soft link?") == [
        "a hard link",
        "a soft link",
    ]


def test_a_question_for_an_option_asks_for_a_name_whatever_words_describe_it() -> None:
    """ "Which one-letter switch ...", "which built-in function ...": a name is asked, hyphenated words or not."""
    for asked in (
        "Which one-letter switch to the server program sets how many clients may connect?",
        "Which built-in function returns the length of a list?",
        "What command-line option prints the version?",
    ):
        assert read_question(asked, creator=None).kind is FactKind.name, asked


def test_quotes_around_a_word_are_not_part_of_it() -> None:
    """ "ps shows 'idle in transaction'" asks about the words idle and transaction; an apostrophe in a word stays."""
    assert content_terms("My backend shows 'idle in transaction'.") == content_terms(
        "My backend shows idle in transaction."
    )
    assert "user" in content_terms("other users' queries") and "don't" not in content_terms("I don't know")


def test_notes_are_no_negation() -> None:
    """A light stem never lands on "not": "where are notes stored?" would otherwise match every negative sentence."""
    assert stem("notes") == stem("note") == "note"
    assert "not" not in content_terms("Where are git notes stored?")
    assert "not" in content_terms("The file is not tracked.")


def test_a_follow_up_saying_one_for_what_was_asked_asks_for_the_same_kind_of_thing() -> None:
    """ "And the one that keeps the old file?" after a question for options asks for an option too: "one" stands for
    the noun asked about before. "one" as a number ("one session", "one of them", "a one-line ...") does not, and
    neither does a follow-up asking a kind of its own."""
    before = "Which options make dpkg keep my changed configuration files without asking?"

    def kind(question: str) -> FactKind:
        return read_question(question, creator=None, context=before).kind

    assert kind("And the one that keeps the old file?") is FactKind.name
    assert kind("And the default one?") is FactKind.name
    assert kind("And to stop just one session?") is FactKind.general
    assert kind("And for one of the other packages?") is FactKind.general
    assert kind("And a one-line summary?") is FactKind.general
    assert kind("And why is the one I set ignored?") is FactKind.reason
    assert read_question("And the one that keeps the old file?", creator=None).kind is FactKind.general


def test_a_question_asking_what_holds_when_nothing_is_said_asks_for_a_default() -> None:
    """ "Unless I say otherwise", "by default", "what is assumed" ask for a default; "default" as a plain word in a
    question about something else does not."""
    for question in (
        "Where are notes kept unless I say otherwise?",
        "How long does gc keep loose objects, by default?",
        "If I don't say which language the block is in, what language is assumed?",
        "What's the default port?",
    ):
        assert read_question(question, creator=None).default, question
    for question in (
        "Each new transaction starts with the default isolation level instead of mine. How do I keep mine?",
        "How many consoles does a default system have?",
        "How do I make one database default to geqo off?",
    ):
        assert not read_question(question, creator=None).default, question


def test_a_follow_up_naming_the_other_side_of_a_pair_turns_to_it() -> None:
    """The follow-up has one side of a pair and not the other, the question before the other and not this one."""
    before = "Which decorator runs a function before every request?"
    assert counterparts("And the one that runs after each request?", before) == [("befor", "after")]
    assert counterparts("And to disable them again?", "How do I enable data checksums?") == [("enabl", "disabl")]
    assert counterparts("And the last lines?", "Which command prints the first lines of a file?") == [("first", "last")]
    # Both sides in one question, a side the question before did not name, or no question before: no turn.
    assert counterparts("And what runs before and after it?", before) == []
    assert counterparts("And the one for errors?", before) == []
    assert counterparts("Which runs after each request?", "") == []
