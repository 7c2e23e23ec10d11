"""The claim check: quoted and paraphrased sentences are supported, invented ones and wrong numbers are not."""

from __future__ import annotations

import pytest

from backend.grounding.claim_check import answer_sentences, check_answer, cited_numbers, refusal_spans
from backend.grounding.facts import Quantity, names, quantities
from backend.grounding.sentences import SentenceVectors
from backend.retrieval.embedder import Embedder
from backend.stages import Creator
from tests.backend.chat.helpers import hit

HAZEL = Creator(slug="hazel-marsh", name="Hazel Marsh")
SOURCES = [
    hit(
        1,
        "How much salt I use\n\nI use two percent salt, by the weight of the flour. For my usual loaf of five hundred "
        "grams of flour, that is ten grams of fine sea salt. I weigh it into a little egg cup.",
        creator="hazel-marsh",
    ),
    hit(
        2,
        "I mix the flour and most of the water first and leave it for forty minutes while I have a cup of tea. "
        "Then I add the starter, the salt and a last splash of water.",
        creator="hazel-marsh",
    ),
]


@pytest.fixture(scope="module")
def vectors(shared_embedder: Embedder) -> SentenceVectors:
    return SentenceVectors(shared_embedder)


def test_facts_read_digits_words_and_units_alike() -> None:
    assert quantities("sixty-eight percent") == [Quantity(68.0, "%")] == quantities("68%")
    assert quantities("twenty-four degrees") == [Quantity(24.0, "°C")] == quantities("24 °C")
    assert [q.value for q in quantities("Feed 1:5:2.5")] == [1.0, 5.0, 2.5]
    assert quantities("two point four percent") == [Quantity(2.4, "%")]
    assert quantities("four hundred and eighty grams") == [Quantity(480.0, "g")]
    assert names("Tomás trained with Chef Brassard in Lyon.") == {"brassard", "lyon"}


def test_answer_sentences_keep_their_trailing_markers() -> None:
    text = "Here is what Hazel Marsh's content says: I use salt. [1] She waits [2]. Done"
    spans = [text[a:b] for a, b in answer_sentences(text)]
    assert spans == ["Here is what Hazel Marsh's content says:", "I use salt. [1]", "She waits [2].", "Done"]
    assert cited_numbers("A [1][2] and [3, 4].") == [1, 2, 3, 4]
    # A subscript in inline code is the code's: `argv[1]` cites nothing.
    assert cited_numbers("Run `sys.argv[1]` and ``x = `y`[0]`` first. [2]") == [2]


def test_a_cited_colon_and_the_framing_end_a_sentence_whatever_follows() -> None:
    """A quoted sentence ending in a colon whose code did not come along ("... above: [2]") ends there, its marker
    with it, and the framing ends at its colon when a figure or a lower-case word opens what follows: one claim
    never swallows the next, nor the framing a claim."""
    text = "Here is what the sources say: 3 files matter. [1] This would match it above: [2] Jane Doe <j@x> [2]"
    spans = [text[a:b] for a, b in answer_sentences(text)]
    assert spans == [
        "Here is what the sources say:",
        "3 files matter. [1]",
        "This would match it above: [2]",
        "Jane Doe <j@x> [2]",
    ]


def test_quotes_and_faithful_paraphrases_are_supported(vectors: SentenceVectors) -> None:
    text = (
        "Here is what Hazel Marsh's content says: I use two percent salt, by the weight of the flour. [1] "
        "For a 500 g loaf that is 10 g of fine sea salt [1]. She rests the flour and water for 40 minutes first [2]."
    )
    check = check_answer(text, SOURCES, vectors, creator=HAZEL)
    assert [s.claim for s in check.sentences] == [False, True, True, True]
    assert all(s.supported for s in check.sentences), check.as_json()
    assert check.unsupported_claims == 0
    quoted = check.sentences[1].quote
    assert quoted is not None and quoted.source == 1
    assert SOURCES[0].text[quoted.start : quoted.end] == "I use two percent salt, by the weight of the flour."


def test_invented_claims_wrong_numbers_and_wrong_citations_are_flagged(vectors: SentenceVectors) -> None:
    text = (
        "Hazel uses 3% salt [1]. "  # a number no source states
        "She recommends Himalayan pink salt for the best flavour [1]. "  # an invention
        "She rests the flour and water for 40 minutes first [1]. "  # true, but in source 2, not the one cited
        "Salt makes the crust go dark and shiny. "  # cites nothing, stated nowhere
        "Hazel learned the method from Chef Brassard in Lyon [7]."  # a source that does not exist
    )
    check = check_answer(text, SOURCES, vectors, creator=HAZEL)
    assert [s.supported for s in check.sentences] == [False] * 5, check.as_json()
    assert check.unsupported_claims == 5


def test_an_uncited_sentence_is_checked_against_every_source(vectors: SentenceVectors) -> None:
    check = check_answer("She leaves the flour and water for forty minutes.", SOURCES, vectors, creator=HAZEL)
    (sentence,) = check.sentences
    assert sentence.sources == [] and sentence.supported
    assert sentence.quote is not None and sentence.quote.source == 2


def test_a_refusal_is_not_a_claim_even_when_a_title_reads_as_sentences(vectors: SentenceVectors) -> None:
    # Issue 37: the widget underlined the refusal's own sentence as "not found in the cited source" when a topic's
    # title held ". " or ": " and split the refusal into pieces that looked like claims.
    text = (
        "Hazel Marsh's content doesn't cover this. The closest topics it does cover: “Proofing: Long Cold Nights In "
        "The Fridge”, “Dr. Brassard. Crumb Structure Explained” and “Salt”."
    )
    check = check_answer(text, SOURCES, vectors, creator=HAZEL)
    assert len(check.sentences) > 2  # the titles do split it
    assert not any(s.claim for s in check.sentences), check.as_json()
    assert check.unsupported_claims == 0
    warm = "I haven't covered that in my content. The closest topics I do cover: “Salt: Why. How Much” and “Flour”."
    assert check_answer(warm, SOURCES, vectors, creator=HAZEL).unsupported_claims == 0
    # A claim after the refusal is still checked.
    mixed = text + " Hazel adds three cups of sugar to every loaf."
    assert check_answer(mixed, SOURCES, vectors, creator=HAZEL).unsupported_claims == 1


def test_the_refusal_is_found_in_linear_time_in_an_answer_with_no_sentence_ends() -> None:
    # A runaway upstream's answer: thousands of words, no sentence end. The refusal's pattern once scanned back for
    # a sentence start from every position (quadratic: minutes for 16,000 characters); now one pass and a look back.
    runaway = " ".join(f"word{i:05d}" for i in range(20_000))
    assert refusal_spans(runaway) == []
    text = f"{runaway} so Hazel's content doesn't cover this."
    assert refusal_spans(text) == [(0, len(text))]
    warm = "Sure. I haven't covered that in my content. The closest topics I do cover: “Salt” and “Yeast”."
    assert refusal_spans(warm) == [(warm.index("I haven't"), len(warm))]


def test_a_quote_running_through_its_source_is_supported_however_many_lines_it_spans(vectors: SentenceVectors) -> None:
    """A sentence quoted with the code it introduces (each line in backticks, joined by "; ") runs, word for word,
    through more of its source than the sentences around one: it is supported as a quote. A changelog entry's issue
    number after its full stop ("#1469.", ended as a sentence like every quote) is that entry's end, not a claim of
    its own. A subscript's "[0]" is the code's, not a citation. A run of three words ("it is ten") proves nothing, so
    a short claim is still weighed."""
    code = hit(
        1,
        "For example, you can manage a database connection using this pattern:\n\nfrom flask import g\n\n"
        "def get_db():\n    if 'db' not in g:\n        g.db = connect_to_database()\n\n    return g.db\n\n"
        "@app.teardown_appcontext\ndef teardown_db(exception):\n    db = g.pop('db', None)\n\n"
        "    if db is not None:\n        db.close()\n\nThe first word: parts = line.split(None, 1)[0]",
    )
    changes = hit(2, "Consider sensible-editor when determining the editor to use for click.edit(). #1469")
    text = (
        "Here is what the sources say: For example, you can manage a database connection using this pattern: "
        "`from flask import g`; `def get_db():`; `if 'db' not in g:`; `g.db = connect_to_database()`; "
        "`return g.db`; `@app.teardown_appcontext`; `def teardown_db(exception):`; `db = g.pop('db', None)`; "
        "`if db is not None:`; `db.close()`. [1] The first word: `parts = line.split(None, 1)[0]`. [1] "
        "Consider sensible-editor when determining the editor to use for "
        "click.edit(). #1469. [2] I use it ten times. [2]"
    )
    check = check_answer(text, [code, changes], vectors)
    claims = [(text[s.start : s.end], s.supported, s.score) for s in check.sentences if s.claim]
    assert [claim for claim, *_ in claims] == [
        text[text.index("For example") : text.index(" The first word")],
        "The first word: `parts = line.split(None, 1)[0]`. [1]",
        "Consider sensible-editor when determining the editor to use for click.edit(). #1469. [2]",
        "I use it ten times. [2]",
    ]
    assert [(supported, score) for _, supported, score in claims[:3]] == [(True, 1.0)] * 3, check.as_json()
    assert not claims[3][1]
