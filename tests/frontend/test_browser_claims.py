"""The claim check in real Chromium (issue 12): hovering or focusing [n] highlights the supporting quote inside
source card n; a sentence no source states is marked, with the "not found in the cited source" tooltip."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.fakes.openai_server import Script, ScriptedOpenAI
from tests.frontend.conftest import LiveApp, Tab, screenshot
from tests.frontend.test_browser import CREATOR, ask, conversation, last_assistant, stored_session, wait_status

pytestmark = pytest.mark.browser

NOTE = "not found in the cited source"


def test_a_citation_shows_its_quote_and_an_invented_sentence_is_marked(
    tab: Tab, live_app: LiveApp, fake_llm: ScriptedOpenAI
) -> None:
    tokens = ["Hazel", " uses", " two", " percent", " salt", " [1].", " She", " adds", " honey", " to", " every",
              " loaf", " [1]."]  # fmt: skip
    fake_llm.default = Script(tokens=tokens)
    page = tab.page
    page.goto(f"{live_app.origin}/creators/{CREATOR}")
    ask(page, "How much salt does Hazel use?")
    wait_status(page, "done")
    message = last_assistant(page)

    first, second = message.get_by_test_id("lorechat-citation").all()
    card = message.locator('[data-testid="lorechat-source-card"][data-index="1"]')
    first.focus()  # keyboard: the quote shows on focus, not only on hover
    quote = card.get_by_test_id("lorechat-quote")
    expect(quote).to_be_visible()
    assert re.search(r"\b(2|two) percent salt", quote.text_content() or "", re.I)
    expect(card).to_have_class(re.compile(r"\bquoting\b"))
    expect(first).to_have_attribute("aria-label", re.compile(r"^Source 1: "))
    screenshot(page, "claim_quote_on_focus")
    page.keyboard.press("Tab")  # focus moves on: the card shows its snippet again
    expect(card.get_by_test_id("lorechat-quote")).to_have_count(0)

    second.hover()
    marked = message.get_by_test_id("lorechat-unsupported")
    expect(marked.first).to_have_attribute("title", NOTE)
    # The sentence's words (its [1] button stays outside the mark, so its closing "." follows a space).
    assert " ".join("".join(marked.all_text_contents()).split()) == "She adds honey to every loaf ."
    expect(second).to_have_attribute("aria-label", f"Source 1, {NOTE}")
    expect(marked.first).to_have_attribute("aria-description", NOTE)
    marked.first.focus()  # a tab stop: keyboard and screen-reader users reach the note too

    # The check is stored with the answer and comes back with the conversation.
    stored = conversation(live_app, stored_session(page)["conversationId"])["messages"][-1]
    assert stored["unsupported_claims"] == 1 and stored["unanswered"] is False
    assert [c["supported"] for c in stored["citations"] if c["claim"]] == [True, False]
    assert not tab.dialogs
