"""The extractive tier quotes the source sentences that answer the question, cited, and never invents."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from backend.chat.prompt import Prompt
from backend.chat.tiers.extractive import ExtractiveTier, compose_answer
from backend.grounding import relevance
from backend.grounding.coverage import assess
from backend.grounding.question import read_question
from backend.grounding.sentences import SentenceVectors
from backend.settings import ExtractiveTierSettings
from backend.stages import Creator
from tests.backend.chat.helpers import hit, prompt_for

HAZEL = Creator(slug="hazel-marsh", name="Hazel Marsh")
# Hazel's salt article as retrieval returns it: her name and "salt" everywhere, one sentence with the number.
SALT = [
    hit(
        1,
        "Hazel Marsh here. Right, kettle on, because this one is a confession. For the first two years I forgot "
        "the salt about once a month. So let me tell you how I handle salt now.",
        creator="hazel-marsh",
    ),
    hit(
        2,
        "How much salt I use\n\nI use two percent salt, by the weight of the flour. For my usual loaf of five "
        "hundred grams of flour, that is ten grams of fine sea salt. I weigh it into a little egg cup.",
        creator="hazel-marsh",
    ),
    hit(3, "For beginners I always say sixty-eight percent hydration.", creator="hazel-marsh"),
]


async def test_streams_the_matching_sentence_with_its_citation(vectors: SentenceVectors) -> None:
    tier = ExtractiveTier(ExtractiveTierSettings(name="extractive"), vectors=vectors)
    texts, finish = [], None
    async for delta in tier.stream(prompt_for("Where did the punched cards idea come from?")):
        texts.append(delta.text)
        finish = delta.finish_reason or finish
    answer = "".join(texts)
    assert "an idea borrowed from the Jacquard loom. [2]" in answer
    assert answer.startswith("Here is what Ada Lovelace's content says:")
    assert finish == "stop"
    assert len([t for t in texts if t]) > 5  # streamed word by word


def test_the_creators_name_and_boilerplate_do_not_pick_the_sentences(vectors: SentenceVectors) -> None:
    # Issue 12: "What does Hazel say about salt?" quoted her name and her hydration number, not her salt.
    answer = compose_answer(prompt_for("What does Hazel say about salt?", sources=SALT, creator=HAZEL), vectors)
    assert "I use two percent salt, by the weight of the flour. [2]" in answer
    assert "Hazel Marsh here" not in answer
    assert "sixty-eight" not in answer


def test_a_how_much_question_gets_the_sentence_with_the_number(vectors: SentenceVectors) -> None:
    answer = compose_answer(prompt_for("How much salt for a 500 g loaf?", sources=SALT, creator=HAZEL), vectors)
    assert "ten grams of fine sea salt. [2]" in answer


def test_every_quoted_sentence_comes_from_its_cited_source(vectors: SentenceVectors) -> None:
    prompt = prompt_for("Who computed Bernoulli numbers and who built the engine?")
    answer = compose_answer(prompt, vectors)
    quoted = re.findall(r"(?:^|\] |: )([^:\]]+?) \[(\d)\]", answer)
    assert quoted
    for sentence, number in quoted:
        assert sentence.strip() in prompt.sources[int(number) - 1].text


def test_is_deterministic(vectors: SentenceVectors) -> None:
    prompt = prompt_for("What did Babbage build?")
    assert compose_answer(prompt, vectors) == compose_answer(prompt, vectors)
    assert "[3]" in compose_answer(prompt, vectors)


def test_uncovered_or_sourceless_questions_get_the_honest_reply(vectors: SentenceVectors) -> None:
    assert compose_answer(prompt_for("Anything?", sources=[]), vectors) == "Ada Lovelace's content doesn't cover this."
    refusal = compose_answer(prompt_for("What about tea?", covered=False), vectors)
    assert refusal.startswith("Ada Lovelace's content doesn't cover this.")
    assert refusal.endswith("The closest topics it does cover: “Document 1”, “Document 2” and “Document 3”.")
    assert "[" not in refusal
    assert compose_answer(prompt_for("Anything?", sources=[], weight=1.0), vectors).startswith("I haven't covered")
    assert "The available content" in compose_answer(prompt_for("Anything?", sources=[], creator=None), vectors)


def test_the_dial_changes_the_framing_only(vectors: SentenceVectors) -> None:
    answers = [
        compose_answer(prompt_for("How much salt does Hazel use?", sources=SALT, creator=HAZEL, weight=w), vectors)
        for w in (0.0, 0.5, 1.0)
    ]
    assert answers[2].startswith("Here is what I wrote about it:")
    assert len({answer.split(":", 1)[1] for answer in answers}) == 1


def test_a_compound_question_gets_a_sentence_for_each_part(vectors: SentenceVectors) -> None:
    # Each part is answered by a different source; the whole question alone picked the first part's only.
    sources = [
        hit(1, "The loom at Spitalfields is built from seasoned oak. Its frame was restored in 1901."),
        hit(2, "Weavers there change the warp every nine days. The cloth goes to the market on Fridays."),
        hit(3, "Oak and walnut are the woods most looms were built from."),
    ]
    answer = compose_answer(
        prompt_for(
            "What wood is the Spitalfields loom made of, and how often do the weavers change the warp?",
            sources=sources,
            creator=None,
        ),
        vectors,
    )
    assert "seasoned oak" in answer and "every nine days" in answer


def test_a_comparison_gets_each_sides_sentence(vectors: SentenceVectors) -> None:
    sources = [
        hit(1, "The freeze command stops the widget and keeps its state on disk, so thaw resumes it later."),
        hit(2, "The drop command stops the widget and deletes its state; it cannot be resumed."),
        hit(3, "Widgets report their state every minute to the spool."),
    ]
    answer = compose_answer(
        prompt_for("What's the difference between freeze and drop?", sources=sources, creator=None), vectors
    )
    assert "keeps its state on disk" in answer and "deletes its state" in answer


def test_a_second_person_question_to_a_creator_reads_as_their_first_person(vectors: SentenceVectors) -> None:
    sources = [
        hit(1, "Readers often name their starters after pets. A friend calls hers Dough Vader.", creator="hazel-marsh"),
        hit(2, "My own starter is called Gerald, and I feed him every morning.", creator="hazel-marsh"),
    ]
    answer = compose_answer(prompt_for("What is your starter called?", sources=sources, creator=HAZEL), vectors)
    assert "Gerald" in answer


def test_an_identifiers_words_count_as_words(vectors: SentenceVectors) -> None:
    """A configuration key or a parameter is words run together: "grep.lineNumber" speaks of line numbers."""
    from backend.grounding.terms import content_terms, stem

    def words(*plain: str) -> set[str]:
        return {stem(word) for word in plain}

    assert words("line", "number") <= content_terms("grep.lineNumber: If set to true, enable -n option by default.")
    assert words("exist", "ok") <= content_terms("os.makedirs(name, exist_ok=False)")
    assert words("git", "dir") <= content_terms("Set GIT_DIR to the repository.")
    text = (
        "grep.lineNumber\n\nIf set to true, enable -n option by default.\n\n"
        "grep.column\n\nIf set to true, enable the --column option by default.\n\n"
        "grep.threads\n\nNumber of grep worker threads to use."
    )
    sources = [hit(1, text, title="git-grep configuration")]
    answer = compose_answer(
        prompt_for("How do I always show line numbers in git grep?", sources=sources, creator=None), vectors
    )
    assert "grep.lineNumber: If set to true, enable -n option by default. [1]" in answer, answer


def test_a_comparison_of_two_short_options_gets_each_options_sentence(vectors: SentenceVectors) -> None:
    """ "What's the difference between dpkg -r and dpkg -P?" asks about -r and -P: an option's letter is a term of its
    own (case kept), and "difference" and "between" are the comparison's framing, not what a sentence must say."""
    assert set(read_question("What's the difference between dpkg -r and dpkg -P?", creator=None).terms) == {
        "dpkg", "-r", "-P",
    }  # fmt: skip
    sources = [
        hit(1, "To make the choice easier, dpkg can display the difference between the two versions of the file."),
        hit(
            2,
            "dpkg -r removes the package but keeps its configuration files. dpkg -P also removes the configuration "
            "files. Both need root.",
        ),
    ]
    answer = compose_answer(
        prompt_for("What's the difference between dpkg -r and dpkg -P?", sources=sources, creator=None), vectors
    )
    assert "keeps its configuration files" in answer and "also removes the configuration files" in answer, answer


def test_a_capital_letter_naming_a_row_finds_that_row(vectors: SentenceVectors) -> None:
    """ "Which range belongs to class B?" asks about the row keyed "B": a capital letter standing alone is a term
    (case kept), and so is the row's key; "A" and "I" are words, and an initial or a key chord names nothing."""
    from backend.grounding.terms import content_terms

    assert "B" in content_terms("Which private address range belongs to class B?")
    assert not {"A", "I", "C", "S"} & content_terms("I press Ctrl-C in a shell. A friend, S. Smith, agreed.")
    text = (
        "Let us be reminded of the IPv4 address ranges in each class reserved for use on local networks.\n\n"
        "Class | network addresses | net mask\n\n"
        "A | 10.x.x.x | 255.0.0.0\n\n"
        "B | 172.16.x.x — 172.31.x.x | 255.255.0.0\n\n"
        "C | 192.168.0.x — 192.168.255.x | 255.255.255.0"
    )
    sources = [hit(1, text, title="The network address range for the LAN")]
    for letter, value in (("B", "172.16"), ("C", "192.168")):
        question = f"Which private address range belongs to class {letter}?"
        answer = compose_answer(prompt_for(question, sources=sources), vectors)
        assert value in answer, (letter, answer)


BISECT = (
    "If you have a script that can tell if the current source code is good or bad, you can bisect by issuing the "
    "command: git bisect run my_script arguments. Note that the script should exit with code 0 if the current source "
    "code is good, and exit with a code between 1 and 127 (inclusive), except 125, if the current source code is "
    "bad.\n\nThe special exit code 125 should be used when the current source code cannot be tested. If the script "
    "exits with this code, the current revision will be skipped (see git bisect skip above)."
)
RENAMES = (
    "Rename detection compares the files' contents. The similarity score defaults to 50%, and can be changed by "
    "giving a number after the -M option (e.g. -M8 to tell it to use 8/10 = 80%).\n\n"
    "Copy detection is off by default."
)


def follow_up(question: str, *, asked: str, said: str, sources: list) -> Prompt:
    """A follow-up as the service builds it for a tier whose window had no room left for the history: the messages
    hold no earlier turn, `follow_up_of` and `said_before` carry the question and the answer before it."""
    prompt = prompt_for(question, sources=sources, creator=None)
    assert len(prompt.messages) == 2  # system and question: no history
    prompt.follow_up_of = asked
    prompt.said_before = said
    return prompt


def test_a_follow_up_gets_what_it_asks_not_the_answer_before_it_again(vectors: SentenceVectors) -> None:
    """Read with the question before it, a follow-up ranks that question's sentences high again: one already quoted
    counts only for what the follow-up itself asks of it. So "And which codes mark it as bad?" gets the 1-127
    sentence (without the rule: the exit code 125 again, and the sentence after it); "And how do I ask for 80%
    instead?" still gets the sentence it was quoted in, since it asks for what that sentence says."""
    sources = [hit(1, BISECT, title="git-bisect: Bisect run")]
    asked = "When git bisect runs my script, which exit code means the commit cannot be tested and should be skipped?"
    said = compose_answer(prompt_for(asked, sources=sources, creator=None), vectors)
    assert "exit code 125" in said and "between 1 and 127" not in said, said
    answer = compose_answer(
        follow_up("And which codes mark it as bad?", asked=asked, said=said, sources=sources), vectors
    )
    assert "between 1 and 127" in answer, answer

    sources = [hit(1, RENAMES, title="diff: Rename detection")]
    asked = "How similar do two files have to be for diff to call it a rename?"
    said = compose_answer(prompt_for(asked, sources=sources, creator=None), vectors)
    assert "-M8" in said, said
    again = compose_answer(
        follow_up("And how do I ask for 80% instead?", asked=asked, said=said, sources=sources), vectors
    )
    assert "-M8" in again, again


def test_a_follow_up_gets_a_sentence_the_answer_before_quoted_in_passing(vectors: SentenceVectors) -> None:
    """The answer before quoted the spelt loaf's time beside the temperature it was asked for: "And for how long?"
    asks for that time now (the question before asked no time), so it is not "said before", and the follow-up
    gets it. Without the rule: other loaves' times only, the spelt one counting as little as "And for how long?"
    alone asks of it."""
    loaves = [("Rye", 230, "fifty"), ("Spelt", 210, "forty"), ("Barley", 220, "fifty-five")]
    sources = [
        hit(
            i,
            f"Bake {name.lower()} bread at {heat} degrees. {name} bread needs {minutes} minutes in the oven.",
            title=f"{name} bread",
        )
        for i, (name, heat, minutes) in enumerate(loaves, start=1)
    ]
    asked = "At what temperature should I bake the spelt bread?"
    said = (
        "Here is what the sources say: Bake spelt bread at 210 degrees. [2] "
        "Spelt bread needs forty minutes in the oven. [2]"
    )
    answer = compose_answer(follow_up("And for how long?", asked=asked, said=said, sources=sources), vectors)
    assert "forty minutes" in answer, answer


def test_a_follow_up_turning_to_the_other_side_of_a_pair_gets_that_side(vectors: SentenceVectors) -> None:
    """ "And the ones that run after it?" after "Which hooks run before a build?": the sentence on the side asked
    before ("Before each build ...") answered that question, not this one, and the follow-up gets the after side."""
    sources = [
        hit(1, "Build hooks\n\nBefore each build starts, every pre_build hook is run in order; a hook can stop the "
            "build by returning an error.", title="Build hooks"),
        hit(2, "When a build is over, the result goes to the post_build hooks, which may publish it. A build's log "
            "is kept for a week.", title="Build hooks"),
        hit(3, "The cleanup hooks run last, whatever happened.", title="Build hooks"),
    ]  # fmt: skip
    asked = "Which hooks run before a build?"
    said = compose_answer(prompt_for(asked, sources=sources, creator=None), vectors)
    assert "pre_build" in said, said
    answer = compose_answer(
        follow_up("And the ones that run after it?", asked=asked, said=said, sources=sources), vectors
    )
    assert "post_build" in answer, answer
    assert "pre_build" not in answer, answer


def test_a_how_is_a_different_from_b_question_gets_each_sides_sentence(vectors: SentenceVectors) -> None:
    """ "How is A different from B?" is a comparison as much as "the difference between A and B": each side is
    answered with its own sentence (how the question splits: tests/backend/grounding/test_question.py)."""
    sources = [
        hit(1, "The freeze command stops the widget and keeps its state on disk, so thaw resumes it later."),
        hit(2, "The drop command stops the widget and deletes its state; it cannot be resumed."),
        hit(3, "Widgets report their state every minute to the spool."),
    ]
    answer = compose_answer(prompt_for("How is freeze different from drop?", sources=sources, creator=None), vectors)
    assert "keeps its state on disk" in answer and "deletes its state" in answer, answer


def test_a_sentence_two_sources_share_is_said_once(vectors: SentenceVectors) -> None:
    """Picked in one source and brought along in another (a later sentence there leans on it), a sentence the two
    share is quoted once, with the first citation."""
    shared = "Having the GNU Emacs manual for reference when learning Emacs is highly recommended."
    sources = [
        hit(1, f"Emacs is a large editor. {shared} It has many modes."),
        hit(2, f"Several editors come with Debian. {shared} All these programs usually come with a tutoring program."),
    ]
    answer = compose_answer(
        prompt_for("Which editor do you recommend a newcomer learns?", sources=sources, creator=None), vectors
    )
    assert "tutoring program" in answer, answer
    assert answer.count(shared) == 1, answer


def test_each_part_of_a_compound_question_gets_a_sentence_of_its_own(vectors: SentenceVectors) -> None:
    """git's own pages: for "which keeps passwords only in memory?" the best sentence is the general one the whole
    question already picked ("... credentials may be stored in-memory for a few minutes ..."). The part still gets a
    sentence of its own, the next best ("Cache credentials in memory ..."), which is the answer."""
    custom = (
        "CUSTOM HELPERS\n\nYou can write your own custom helpers to interface with any system in which you keep "
        "credentials.\n\nCredential helpers are programs executed by Git to fetch or save credentials from and to "
        'long-term storage (where "long-term" is simply longer than a single Git process; e.g., credentials may be '
        "stored in-memory for a few minutes, or indefinitely on disk).\n\nEach helper is specified by a single string "
        "in the configuration variable credential.helper (and others, see git-config(1))."
    )
    included = (
        "Git currently includes the following helpers:\n\ncache\n\nCache credentials in memory for a short period of "
        "time. See git-credential-cache(1) for details.\n\nstore\n\nStore credentials indefinitely on disk. See "
        "git-credential-store(1) for details.\n\nYou may also have third-party helpers installed; search for "
        "credential-* in the output of git help -a, and consult the documentation of individual helpers."
    )
    sources = [
        hit(1, custom, title="gitcredentials - Providing usernames and passwords to Git: Custom helpers"),
        hit(2, included, title="gitcredentials - Providing usernames and passwords to Git: Avoiding repetition"),
    ]
    question = "Which credential helpers come with git, and which keeps passwords only in memory?"
    answer = compose_answer(prompt_for(question, sources=sources, creator=None), vectors)
    assert "Cache credentials in memory" in answer, answer


# A starter article as retrieval returns it: the answer ("three feeds, twelve hours apart") shares no word with the
# question, but its section's heading says what it is about.
FRIDGE = [
    replace(
        hit(1, "Keep it simple. A starter is a routine more than a recipe. Pick one flour and one jar.", creator="hz"),
        heading="Starters > My honest advice",
    ),
    replace(
        hit(
            2,
            "When we go away I give the starter a stiff feed and put it at the back of the fridge. It can sit there "
            "for three weeks without sulking. When we get back I do three feeds, twelve hours apart, at room "
            "temperature. The first one is always sluggish.",
            creator="hz",
        ),
        heading="Starters > Waking it after the fridge",
    ),
    hit(
        3,
        "Feed the starter at about nine o'clock with twenty grams of starter and forty grams of flour. A starter "
        "likes a warm kitchen. If a starter smells of acetone, pour off the liquid and feed it.",
        creator="hz",
    ),
]


def test_a_sentence_is_read_with_the_heading_it_sits_under(
    vectors: SentenceVectors, monkeypatch: pytest.MonkeyPatch
) -> None:
    question = "How do I wake a starter up after a holiday in the fridge?"
    answer = compose_answer(prompt_for(question, sources=FRIDGE, creator=None), vectors)
    assert "When we get back I do three feeds, twelve hours apart, at room temperature. [2]" in answer
    covered = assess(question, search_query=question, hits=FRIDGE, creator=None, vectors=vectors)

    monkeypatch.setattr(relevance, "_HEADING_WEIGHT", 0.0)
    assert "three feeds" not in compose_answer(prompt_for(question, sources=FRIDGE, creator=None), vectors)
    # Coverage's confidence is the sentence's own: a heading on the asked topic does not make a question answered.
    assert assess(question, search_query=question, hits=FRIDGE, creator=None, vectors=vectors) == covered


def test_a_short_sentence_naming_a_literal_is_not_a_fragment(vectors: SentenceVectors) -> None:
    """A sentence of a few words is a fragment that says little ("That works too.") and ranks lower, unless it names a
    literal: 'Or you can type "logout".' answers "And what can I type instead?" as well as a long one would."""
    sources = [
        hit(
            1,
            "Leaving the shell\n\nYou press Ctrl-D at the prompt to end the shell session. On the text console this "
            "takes you back to the login prompt. In a terminal emulator the window closes. "
            'Or you can type "logout". That works too. Use `exit 3` to end it with a status.',
            title="Leaving the shell",
        )
    ]
    ranked = relevance.rank(read_question("What can I type to leave the shell?", creator=None), sources, vectors)
    penalty = {c.span.text: round(c.relevance - c.score, 6) for c in ranked}
    assert penalty['Or you can type "logout".'] == 0, penalty
    assert penalty["Use `exit 3` to end it with a status."] == 0, penalty
    assert penalty["That works too."] > 0, penalty


def test_a_question_asking_for_a_default_gets_the_sentence_stating_it(vectors: SentenceVectors) -> None:
    """ "Where are notes stored unless I say otherwise?" asks for the default: the sentence saying what holds by
    default is the answer, among sentences about where notes are stored in other cases (which, without the rule,
    fill the answer: it says "written to and read from", not "stored")."""
    sources = [
        hit(
            1,
            "Notes\n\nNotes can be attached to any commit without changing the commit itself. The notes ref stored "
            "during a merge of notes is kept in .git/NOTES_MERGE_REF until the merge is done. Notes fetched from "
            "another repository are stored in refs/notes/remote/* when you ask for them. Notes you copy with --ref are "
            "stored under the ref you name. By default, notes are written to and read from refs/notes/commits, which "
            "the core.notesRef setting can change. A notes merge in progress stores its work tree in "
            ".git/NOTES_MERGE_WORKTREE.",
            title="Notes",
        )
    ]
    answer = compose_answer(
        prompt_for("Where are notes stored unless I say otherwise?", sources=sources, creator=None), vectors
    )
    assert "refs/notes/commits" in answer, answer
