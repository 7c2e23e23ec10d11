"""Closing the curator loop in real Chromium, on the embedded defaults (the extractive tier alone, SQLite): a visitor's
👎 puts a question in the inbox; a curator signs in, opens the gap topic and writes a curated answer; a visitor asking
a paraphrase gets that answer (tier `curated`) with its sources, and a question on another topic does not; starter
questions show before the first question and one click (or Enter) asks it; follow-up suggestions appear under an
answer, and asking one gets an answer, not a refusal. The rating buttons are SVG icons with accessible names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from pydantic import SecretStr

from backend.settings import AuthSettings, LLMSettings
from tests.frontend.conftest import LiveApp, StaticSite, Tab, app_settings, open_tab, screenshot

pytestmark = pytest.mark.browser

CREATOR = "hazel-marsh"
ADMIN_TOKEN = "browser-curated-" + "t" * 24
ASSISTANT = '[data-testid="lorechat-message-assistant"]'
GAP_QUESTION = "Does Hazel sell her sourdough starter?"
PARAPHRASE = "Will Hazel sell me some of her sourdough starter?"
CURATED = "Hazel does not sell Bartholomew, but she hands out spoonfuls of him after her village hall talks."
REFUSAL = "doesn't cover"


@pytest.fixture(scope="module")
def embedded_app(widget_js: Path, data_dir_copy: Callable[[], Path], allowed_site: StaticSite) -> Iterator[LiveApp]:
    """The embedded defaults: no model, the extractive tier answers every question; the dashboard enabled."""
    settings = app_settings(data_dir_copy(), llm_url="http://127.0.0.1:9/v1", cors_origins=[allowed_site.origin])
    settings = settings.model_copy(
        update={"llm": LLMSettings(), "auth": AuthSettings(admin_token=SecretStr(ADMIN_TOKEN))}
    )
    app = LiveApp(settings).start()
    yield app
    app.stop()


def ask(page: Page, question: str) -> Locator:
    page.get_by_test_id("lorechat-input").fill(question)
    page.get_by_test_id("lorechat-send").click()
    answer = page.locator(ASSISTANT).last
    expect(answer).to_have_attribute("data-status", "done", timeout=20_000)
    return answer


def sign_in(page: Page, app: LiveApp) -> None:
    page.goto(f"{app.origin}/admin")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{app.origin}/admin")


def test_ca_a_curator_answers_a_gap_and_visitors_get_that_answer(
    tab: Tab, browser: Browser, embedded_app: LiveApp
) -> None:
    page = tab.page
    page.goto(f"{embedded_app.origin}/creators/{CREATOR}")
    answer = ask(page, GAP_QUESTION)
    down = answer.get_by_role("button", name="Not helpful")  # an accessible name, not an emoji
    expect(down.locator("svg")).to_be_visible()
    box = down.locator("svg").bounding_box()
    assert box is not None and box["width"] >= 12 and box["height"] >= 12  # drawn, not an empty glyph box
    down.click()
    expect(down).to_have_attribute("aria-pressed", "true")

    curator = open_tab(browser)
    try:
        sign_in(curator.page, embedded_app)
        topic = curator.page.get_by_test_id("gap-topic").filter(has_text=GAP_QUESTION)
        expect(topic).to_contain_text("thumbs_down 1")
        topic.get_by_test_id("gap-answer").click()
        form = curator.page.get_by_test_id("answer-form")
        expect(form.get_by_label("Questions it answers, one per line")).to_have_value(GAP_QUESTION)
        expect(form.get_by_label("Creator")).to_have_value(CREATOR)
        form.get_by_label("Answer", exact=True).fill(CURATED)
        form.get_by_role("button", name="Save the answer").click()
        expect(curator.page).to_have_url(f"{embedded_app.origin}/admin#answers")
        written = curator.page.get_by_test_id("curated-answer").filter(has_text=CURATED)
        expect(written).to_have_attribute("data-status", "active")
        expect(curator.page.get_by_test_id("gap-topic").filter(has_text=GAP_QUESTION)).to_have_count(0)  # answered
        screenshot(curator.page, "curated_answer_written")

        # A visitor asks it in other words: the curated answer, with its sources, marked as the curator's.
        page.get_by_test_id("lorechat-new-conversation").click()
        got = ask(page, PARAPHRASE)
        expect(got.get_by_test_id("lorechat-curated")).to_be_visible()
        expect(got.get_by_test_id("lorechat-answer")).to_contain_text(CURATED)
        expect(got.get_by_test_id("lorechat-source-card").first).to_be_visible()
        screenshot(page, "curated_answer_served")
        # Another topic: not this answer.
        other = ask(page, "How much salt does Hazel put in her dough?")
        expect(other.get_by_test_id("lorechat-curated")).to_have_count(0)
        expect(other.get_by_test_id("lorechat-answer")).not_to_contain_text(CURATED)

        curator.page.reload()
        served = curator.page.get_by_test_id("curated-answer").filter(has_text=CURATED)
        expect(served.get_by_test_id("curated-uses")).to_have_text("1")
    finally:
        curator.context.close()


def test_ca_starters_show_before_the_first_question_and_follow_ups_are_answerable(
    tab: Tab, browser: Browser, embedded_app: LiveApp
) -> None:
    curator = open_tab(browser)
    try:
        sign_in(curator.page, embedded_app)
        form = curator.page.get_by_test_id("starters-form")
        form.get_by_label("Creator").select_option(CREATOR)
        form.get_by_label("Starter questions, one per line (at most 4; empty removes the set)").fill(
            "How do you do the Quillfield fold?\nHow much salt does Hazel put in her dough?"
        )
        form.get_by_role("button", name="Save starter questions").click()
        expect(curator.page.get_by_test_id("table-starters")).to_contain_text("How do you do the Quillfield fold?")
    finally:
        curator.context.close()

    page = tab.page
    page.goto(f"{embedded_app.origin}/creators/{CREATOR}")
    starters = page.get_by_test_id("lorechat-starter")
    expect(starters).to_have_count(2)
    expect(page.get_by_role("list", name="Suggested questions")).to_be_visible()
    screenshot(page, "starters")
    starters.first.focus()  # keyboard only: a button, Enter asks it
    page.keyboard.press("Enter")
    first = page.locator(ASSISTANT).last
    expect(first).to_have_attribute("data-status", "done", timeout=20_000)
    expect(page.get_by_test_id("lorechat-message-user").first).to_have_text("How do you do the Quillfield fold?")
    expect(starters).to_have_count(0)

    follow_ups = first.get_by_test_id("lorechat-suggestion")
    expect(follow_ups.first).to_be_visible()
    assert 1 <= follow_ups.count() <= 3
    question = follow_ups.first.inner_text()
    screenshot(page, "follow_ups")
    follow_ups.first.click()
    answer = page.locator(ASSISTANT).last
    expect(answer).to_have_attribute("data-status", "done", timeout=20_000)
    expect(page.get_by_test_id("lorechat-message-user").last).to_have_text(question)
    expect(answer.get_by_test_id("lorechat-answer")).not_to_contain_text(REFUSAL)
    expect(answer.get_by_test_id("lorechat-source-card").first).to_be_visible()
