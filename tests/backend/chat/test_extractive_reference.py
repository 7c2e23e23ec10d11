"""Reference entries as documentation sites publish them (issue 37, the flaskdocs set): a configuration value's
"Default: …" line, a name alone between the sentence introducing it and the one describing it, a header's name set
as a heading. Made-up entries in the shapes Sphinx gives them."""

from __future__ import annotations

from backend.chat.tiers.extractive import compose_answer
from backend.grounding.question import FactKind, read_question
from backend.grounding.quotable import quotable
from backend.grounding.relevance import rank
from backend.grounding.sentences import SentenceVectors, split_sentences
from tests.backend.chat.helpers import hit, prompt_for

SETTINGS = (
    "Builtin Configuration Values\n\nThe following configuration values are used internally by Widgets:\n\n"
    "SPIN_COOKIE_SECURE\n\nBrowsers will only send the spin cookie over HTTPS if the cookie is marked secure.\n\n"
    "Default: False\n\nSPIN_LIMIT\n\nThe most turns a widget makes before it rests. A lower limit saves power.\n\n"
    "Default: 40"
)


def test_a_default_line_is_a_sentence_of_the_entry_above_it(vectors: SentenceVectors) -> None:
    """ "Default: False" was split at its colon into two headings, and no answer could say what a value defaults
    to; it is a statement of the entry whose name stands above its description."""
    assert [s.text for s in split_sentences("Default: False\n\nNote: This is kept.")] == [
        "Default: False", "Note:", "This is kept.",
    ]  # fmt: skip
    read = {q.span.text: q for q in quotable(SETTINGS, "", "Configuration")}
    assert read["Default: 40"].label == "SPIN_LIMIT"
    assert read["Default: 40"].lead is not None and read["Default: 40"].lead.text.startswith("The most turns")
    sources = [hit(1, SETTINGS, title="Configuration")]
    answer = compose_answer(
        prompt_for("Is the spin cookie marked secure by default?", sources=sources, creator=None), vectors
    )
    assert "Default: False" in answer, answer


def test_a_name_alone_after_the_sentence_introducing_it_labels_its_description(vectors: SentenceVectors) -> None:
    """ "The following signals exist:" introduces `widgets.spun`, and "This signal is sent ..." defines it: both
    quote the name. Code a sentence introduces stays that sentence's alone."""
    text = (
        "The following signals exist in Widgets:\n\nwidgets.spun\n\nThis signal is sent when a widget finished "
        "spinning. The widget is passed as sender.\n\nTo spin one, run this:\n\nwidgetctl spin --fast\n\n"
        "The widget stops by itself."
    )
    read = {q.span.text: q for q in quotable(text, "", "Signals")}
    assert read["The following signals exist in Widgets:"].code == "widgets.spun"
    assert read["This signal is sent when a widget finished spinning."].label == "widgets.spun"
    assert read["To spin one, run this:"].code == "widgetctl spin --fast"
    assert read["The widget stops by itself."].label == ""
    answer = compose_answer(
        prompt_for(
            "Which signal is sent after a widget has finished spinning?",
            sources=[hit(1, text, title="Signals")],
            creator=None,
        ),
        vectors,
    )
    assert "widgets.spun" in answer, answer


def test_a_headers_name_set_as_a_heading_is_the_term_its_section_defines(vectors: SentenceVectors) -> None:
    text = (
        "Security Headers\n\nBrowsers recognize several response headers.\n\nX-Spin-Options\n\n"
        "Prevents other sites from spinning your widgets in a frame.\n\nWhy it matters\n\nFrames hide clicks."
    )
    read = {q.span.text: q.label for q in quotable(text, "", "Security")}
    assert read["Prevents other sites from spinning your widgets in a frame."] == "X-Spin-Options"
    assert read["Frames hide clicks."] == ""  # a heading in words is no name
    answer = compose_answer(
        prompt_for(
            "Which response header stops other sites from spinning my widgets in a frame?",
            sources=[hit(1, text, title="Security")],
            creator=None,
        ),
        vectors,
    )
    assert "X-Spin-Options" in answer, answer


def test_one_command_and_what_it_printed_quotes_the_command(vectors: SentenceVectors) -> None:
    """ "copy the output of this to your config:" then `$ python -c ...` and the key it printed: the command is the
    answer, the printed key is not quoted. A longer session's code is its commands, without what they printed."""
    text = (
        "SPIN_KEY\n\nA key that signs every spin. For example, copy the output of this to your config:\n\n"
        "$ widgetctl key --new\n'192b9bdd22ab9ed4d12e236c78afcb9a'\n\nDo not reveal the key.\n\n"
        "To compare two versions, run these:\n\n$ widgetctl version a\nStable release\n"
        "$ widgetctl version b\nTesting release\n\n"
        "The newer one wins."
    )
    read = {q.span.text: q.code for q in quotable(text, "", "Configuration")}
    assert read["For example, copy the output of this to your config:"] == "$ widgetctl key --new"
    assert read["To compare two versions, run these:"] == "$ widgetctl version a\n$ widgetctl version b"
    answer = compose_answer(
        prompt_for("How do I make a new spin key?", sources=[hit(1, text, title="Configuration")], creator=None),
        vectors,
    )
    assert "`$ widgetctl key --new`" in answer and "192b9bdd" not in answer, answer


def test_out_of_the_box_asks_for_a_default() -> None:
    assert read_question("Does Widgets mark the spin cookie secure out of the box?", creator=None).default
    assert read_question("How long does a spin last unless I change it?", creator=None).default


def test_an_api_reference_s_kinds_of_thing_ask_for_a_name() -> None:
    """Asked "which decorator", "which signal" or "which helper", a question asks for a name as "which option" does."""
    for question in (
        "Which decorator runs a function before every spin?",
        "Which signal is sent after a widget spun?",
        "My generator needs the request. Which helper keeps it around?",
        "What attribute holds the spin count?",
    ):
        assert read_question(question, creator=None).kind == FactKind.name, question


def test_a_question_asking_what_is_needed_prefers_the_sentence_stating_the_requirement(
    vectors: SentenceVectors,
) -> None:
    """ "What does X need before ...?", "what's the minimum I have to do ...?" ask for a condition: among sentences on
    the topic, the one saying what is required ("... must be set to mirror") ranks above one closer in meaning."""
    for question in (
        "What does a spin table need before I can refresh it without locking readers out?",
        "What's the minimum I have to do to start mirroring two widgets to another host?",
        "What do I need to install to write async spins?",
        "Are there prerequisites for mirroring?",
    ):
        assert read_question(question, creator=None).kind == FactKind.requirement, question
    assert read_question("How do I start mirroring two widgets?", creator=None).kind == FactKind.steps
    mirroring = (
        "Mirroring copies widgets from one host to another as they change. Two widgets or two hundred, a mirror starts "
        "with a full copy of them and then follows every change. Mirroring to another host can be paused and resumed "
        "at any time. On the source host, spin_level must be set to mirror before another host can start mirroring."
    )
    asked = read_question(
        "What's the minimum I have to do to start mirroring two widgets to another host?", creator=None
    )
    ranked = {c.span.text[:20]: c for c in rank(asked, [hit(1, mirroring, title="Mirroring")], vectors)}
    required, paused = ranked["On the source host, "], ranked["Mirroring to another"]
    # Further in meaning from the question, it is what the question asks for.
    assert required.relevance < paused.relevance and required.score > paused.score
