"""The curator loop in real Chromium: a visitor's 👎 reaches the dashboard's inbox under the right creator, a
question the content does not cover becomes a gap topic, a site's origin rule and budget hold, and an
anonymous visitor gets nothing from /admin. The service is real (uvicorn, SQLite, Edge index); sites are
registered with the real CLI against the same database, as a curator would while the server runs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from pydantic import SecretStr

from backend.settings import AuthSettings
from tests.fakes.openai_server import Script, ScriptedOpenAI
from tests.frontend.conftest import LiveApp, StaticSite, Tab, app_settings, open_tab, screenshot

pytestmark = pytest.mark.browser

CREATOR = "hazel-marsh"
ADMIN_TOKEN = "browser-curator-" + "t" * 24
ASSISTANT = '[data-testid="lorechat-message-assistant"]'


@pytest.fixture(scope="module")
def curator_app(
    widget_js: Path, data_dir_copy: Callable[[], Path], llm: ScriptedOpenAI, allowed_site: StaticSite
) -> Iterator[LiveApp]:
    settings = app_settings(data_dir_copy(), llm_url=llm.base_url, cors_origins=[allowed_site.origin])
    settings = settings.model_copy(update={"auth": AuthSettings(admin_token=SecretStr(ADMIN_TOKEN))})
    app = LiveApp(settings).start()
    yield app
    app.stop()


def lorechat(app: LiveApp, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI on the app's own data dir (its SQLite database), nothing from the checkout's config.yaml."""
    env = {**os.environ, "LORECHAT_DATA_DIR": str(app.settings.data_dir), "LORECHAT_CONFIG": "/nonexistent.yaml"}
    env.pop("LORECHAT_DATABASE__URL", None)
    command = [str(Path(sys.executable).with_name("lorechat")), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result


def ask(page: Page, question: str) -> None:
    page.get_by_test_id("lorechat-input").fill(question)
    page.get_by_test_id("lorechat-send").click()


def last_assistant(page: Page) -> Locator:
    return page.locator(ASSISTANT).last


def sign_in(page: Page, app: LiveApp) -> None:
    page.goto(f"{app.origin}/admin")
    expect(page).to_have_url(f"{app.origin}/admin/login")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{app.origin}/admin")


def gap_topic(page: Page, question: str) -> Locator:
    return page.get_by_test_id("gap-topic").filter(has_text=question)


def test_a_visitors_thumbs_down_reaches_the_dashboard_inbox_under_its_creator(
    tab: Tab, browser: Browser, curator_app: LiveApp, fake_llm: ScriptedOpenAI
) -> None:
    fake_llm.default = Script(tokens=["Fold", " it", " three", " times", " [1]."])
    question = "How many folds does Hazel give her laminated dough?"
    page = tab.page
    page.goto(f"{curator_app.origin}/creators/{CREATOR}")
    ask(page, question)
    expect(last_assistant(page)).to_have_attribute("data-status", "done", timeout=15_000)
    # Keyboard only: focus 👎, press Enter, type a comment, press Enter on Send.
    down = last_assistant(page).get_by_test_id("lorechat-feedback-down")
    down.focus()
    page.keyboard.press("Enter")
    expect(down).to_have_attribute("aria-pressed", "true")
    comment = last_assistant(page).get_by_test_id("lorechat-feedback-comment")
    comment.fill("It never says how long to rest between folds.")
    last_assistant(page).get_by_test_id("lorechat-feedback-send").press("Enter")
    expect(last_assistant(page).get_by_test_id("lorechat-feedback-note")).to_have_text("Thanks for the feedback.")
    screenshot(page, "feedback_given")

    curator = open_tab(browser, width=390, height=844)  # a phone
    try:
        sign_in(curator.page, curator_app)
        topic = gap_topic(curator.page, question)
        expect(topic).to_have_count(1)
        expect(topic).to_have_attribute("data-creator", CREATOR)
        expect(topic).to_contain_text("thumbs_down 1")
        feedback = curator.page.get_by_test_id("table-feedback")
        expect(feedback).to_contain_text(CREATOR)
        overflow = curator.page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the dashboard scrolls sideways at phone width by {overflow}px"
        screenshot(curator.page, "dashboard_phone")
        exported = curator.page.request.get(f"{curator_app.origin}/admin/export/gaps.csv")
        assert exported.status == 200 and question in exported.text()
        assert CREATOR in curator.page.request.get(f"{curator_app.origin}/admin/export/feedback.json").text()
    finally:
        curator.context.close()


def test_a_question_the_content_does_not_cover_becomes_a_gap_topic_a_curator_can_resolve(
    tab: Tab, browser: Browser, curator_app: LiveApp, fake_llm: ScriptedOpenAI
) -> None:
    question = "Which satellite launch tax did the Mongolian parliament pass in 1997?"
    fake_llm.default = Script(tokens=["The", " sources", " do", " not", " cover", " this."])
    page = tab.page
    page.goto(f"{curator_app.origin}/creators/{CREATOR}")
    ask(page, question)
    expect(last_assistant(page)).to_have_attribute("data-status", "done", timeout=15_000)

    curator = open_tab(browser)
    try:
        sign_in(curator.page, curator_app)
        topic = gap_topic(curator.page, question)
        expect(topic).to_have_count(1)
        expect(topic).to_have_attribute("data-creator", CREATOR)
        expect(topic).to_contain_text("unanswered 1")  # the coverage check: retrieval confidence too low
        topic.get_by_role("button", name="Mark resolved").click()
        expect(curator.page).to_have_url(f"{curator_app.origin}/admin#gaps")
        expect(gap_topic(curator.page, question)).to_have_count(0)
        listed = lorechat(curator_app, "gaps", "--all", "--json").stdout
        assert question in listed and '"status": "resolved"' in listed
    finally:
        curator.context.close()


def test_an_anonymous_visitor_gets_nothing_from_admin(browser: Browser, curator_app: LiveApp) -> None:
    visitor = open_tab(browser)
    try:
        page = visitor.page
        page.goto(f"{curator_app.origin}/admin")
        expect(page).to_have_url(f"{curator_app.origin}/admin/login")
        expect(page.get_by_test_id("table-gaps")).to_have_count(0)
        page.get_by_label("Admin token").fill("not-the-token")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_test_id("login-error")).to_be_visible()
        for name in (
            "gaps",
            "creators",
            "ingest_runs",
            "questions_per_day",
            "answers_per_tier",
            "ttft",
            "feedback",
            "sites",
        ):
            for fmt in ("csv", "json"):
                reply = page.request.get(f"{curator_app.origin}/admin/export/{name}.{fmt}", max_redirects=0)
                assert reply.status == 401, (name, fmt, reply.status)
                assert CREATOR not in reply.text()
        assert visitor.context.cookies() == []
    finally:
        visitor.context.close()


def test_a_sites_origin_rule_and_daily_budget_hold(
    tab: Tab, curator_app: LiveApp, fake_llm: ScriptedOpenAI, allowed_site: StaticSite
) -> None:
    fake_llm.default = Script(tokens=["Ten", " grams", " [1]."])
    lorechat(curator_app, "sites", "add", "bread-blog", "--origin", allowed_site.origin, "--creator", CREATOR,
             "--daily-limit", "1")  # fmt: skip
    allowed_site.pages["/site.html"] = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<script src="{curator_app.origin}/widget.js" defer></script></head><body>
<lorechat-widget api="{curator_app.origin}" mode="inline" creator="{CREATOR}" site="bread-blog"></lorechat-widget>
</body></html>"""
    page = tab.page
    page.goto(f"{allowed_site.origin}/site.html")
    ask(page, "How much salt?")
    expect(last_assistant(page)).to_have_attribute("data-status", "done", timeout=15_000)
    ask(page, "And water?")  # the day's budget (1) is spent
    expect(page.get_by_test_id("lorechat-rate-limit")).to_be_visible()
    expect(page.get_by_test_id("lorechat-input")).to_have_value("And water?")

    # The service's own page naming the site: not one of its origins.
    page.goto(f"{curator_app.origin}/creators/{CREATOR}")
    page.locator("lorechat-widget").evaluate("(el) => el.setAttribute('site', 'bread-blog')")
    ask(page, "How much salt?")
    expect(last_assistant(page)).to_have_attribute("data-status", "error")
    expect(page.get_by_test_id("lorechat-error")).to_contain_text("may not use the chat from this origin")

    listed = lorechat(curator_app, "sites", "list", "--json").stdout
    assert '"requests_today": 1' in listed and '"refused_today": 1' in listed  # refused: over budget
