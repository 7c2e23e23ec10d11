"""The widget in real Chromium against the real service (uvicorn, SQLite, Edge index, scripted upstream)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.fakes.openai_server import Script, ScriptedOpenAI
from tests.frontend.conftest import XSS_CREATOR, LiveApp, StaticSite, Tab, app_settings, payloads, screenshot

pytestmark = pytest.mark.browser

CREATOR = "hazel-marsh"
ASSISTANT = '[data-testid="lorechat-message-assistant"]'


# ---- helpers --------------------------------------------------------------------------------------------
def ask(page: Page, question: str) -> None:
    page.get_by_test_id("lorechat-input").fill(question)
    page.get_by_test_id("lorechat-send").click()


def last_assistant(page: Page) -> Any:
    return page.locator(ASSISTANT).last


def wait_status(page: Page, status: str, timeout: float = 15_000) -> None:
    expect(last_assistant(page)).to_have_attribute("data-status", status, timeout=timeout)


def answer_text(page: Page) -> str:
    return last_assistant(page).get_by_test_id("lorechat-answer").text_content() or ""


def stored_session(page: Page) -> dict[str, Any]:
    """The one conversation the widget keeps in this origin's localStorage."""
    raw = page.evaluate(
        "() => Object.keys(localStorage).filter((k) => k.startsWith('lorechat:v1:')).map((k) => localStorage[k])"
    )
    assert len(raw) == 1, raw
    return json.loads(raw[0])


def conversation(app: LiveApp, conversation_id: str) -> dict[str, Any]:
    response = httpx.get(f"{app.origin}/api/v1/conversations/{conversation_id}", timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def embed_page(api: str, creator: str) -> str:
    """A third-party page (no CSP of its own) embedding the widget from the service's origin."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Embedding page</title>
<script src="{api}/widget.js" defer></script></head>
<body><h1>A blog about bread</h1>
<lorechat-widget api="{api}" mode="inline" creator="{creator}"></lorechat-widget></body></html>"""


# Records the widget's state on every mutation of its shadow tree: the order things appeared in.
TIMELINE_JS = """() => {
  const root = document.querySelector("lorechat-widget").shadowRoot;
  window.__timeline = [];
  const snap = () => {
    const msgs = root.querySelectorAll('[data-testid="lorechat-message-assistant"]');
    const msg = msgs[msgs.length - 1];
    window.__timeline.push({
      t: performance.now(),
      cards: msg ? msg.querySelectorAll('[data-testid="lorechat-source-card"]').length : 0,
      answer: msg ? msg.querySelector('[data-testid="lorechat-answer"]').textContent : "",
      status: msg ? msg.getAttribute("data-status") : null,
    });
  };
  new MutationObserver(snap).observe(root, { subtree: true, childList: true, characterData: true, attributes: true });
}"""


# ---- 1. sources first, then a growing answer, then done ---------------------------------------------------
def test_sources_appear_before_the_streamed_answer_and_citations_link_cards(
    tab: Tab, live_app: LiveApp, fake_llm: ScriptedOpenAI
) -> None:
    tokens = ["Two", " percent", " salt", " by", " flour", " weight", " [1].", " Add", " it", " after", " a", " rest."]
    fake_llm.default = Script(tokens=tokens, first_token_delay=1.2, token_interval=0.08)
    page = tab.page
    page.goto(f"{live_app.origin}/creators/{CREATOR}")
    expect(page.get_by_test_id("lorechat-input")).to_be_visible()
    page.evaluate(TIMELINE_JS)

    ask(page, "How much salt does Hazel use?")
    # The cards are on screen while the model has not said a word yet.
    expect(page.get_by_test_id("lorechat-source-card").first).to_be_visible(timeout=5_000)
    assert answer_text(page) == ""
    screenshot(page, "sources_before_answer")
    wait_status(page, "done")

    timeline: list[dict[str, Any]] = page.evaluate("window.__timeline")
    first_card = next(i for i, s in enumerate(timeline) if s["cards"] > 0)
    first_text = next(i for i, s in enumerate(timeline) if s["answer"])
    assert first_card < first_text
    assert timeline[first_card]["answer"] == "" and timeline[first_card]["status"] == "streaming"
    assert timeline[first_text]["t"] - timeline[first_card]["t"] > 500  # the scripted first-token delay
    lengths = [len(s["answer"]) for s in timeline[first_text:]]
    assert lengths == sorted(lengths) and len(set(lengths)) >= 3, lengths  # it grew, in steps
    assert answer_text(page) == "Two percent salt by flour weight [1]. Add it after a rest."
    assert fake_llm.requests and fake_llm.requests[-1]["model"] == "scripted"

    cards = page.get_by_test_id("lorechat-source-card")
    assert cards.count() >= 2
    card = cards.first
    expect(card).to_have_attribute("data-index", "1")
    citation = last_assistant(page).get_by_test_id("lorechat-citation")
    expect(citation).to_have_count(1)
    expect(citation).to_have_text("[1]")
    expect(citation).to_have_attribute("aria-controls", card.get_attribute("id") or "missing")
    citation.click()
    expect(card).to_have_class(re.compile(r"\bhighlight\b"))
    assert page.evaluate("document.querySelector('lorechat-widget').shadowRoot.activeElement?.dataset.index") == "1"
    assert not tab.dialogs


# ---- 2. I7: payloads in the model's output, the question and a document stay inert ------------------------
def test_html_script_and_image_payloads_render_inert(
    tab: Tab, live_app: LiveApp, fake_llm: ScriptedOpenAI, allowed_site: StaticSite, canary: StaticSite
) -> None:
    payload = payloads(canary.origin)
    # Split mid-tag so the half-open markup of a streaming answer is exercised too.
    fake_llm.default = Script(tokens=[payload[:9], payload[9:40], payload[40:75], payload[75:]], token_interval=0.05)
    allowed_site.pages["/xss.html"] = embed_page(live_app.origin, XSS_CREATOR)
    page = tab.page
    page.goto(f"{allowed_site.origin}/xss.html")
    question = "What was pasted into the crumb notes? <img src=y onerror=alert(2)>"
    ask(page, question)
    wait_status(page, "done")
    page.wait_for_timeout(500)  # room for any late load an injected element would start

    assert tab.dialogs == []
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert canary.hits == []
    allowed = (allowed_site.origin + "/", live_app.origin + "/")
    assert [url for url in tab.requests if not url.startswith(allowed)] == []

    root = "document.querySelector('lorechat-widget').shadowRoot"
    assert page.evaluate(f"{root}.querySelectorAll('img, script, iframe, object, embed, svg image').length") == 0
    handlers = page.evaluate(
        f"[...{root}.querySelectorAll('*')].flatMap((el) => [...el.attributes].map((a) => a.name))"
        ".filter((name) => name.startsWith('on'))"
    )
    assert handlers == []
    hrefs = page.evaluate(f"[...{root}.querySelectorAll('[href]')].map((el) => el.getAttribute('href'))")
    assert all(href.startswith(("http://", "https://")) for href in hrefs), hrefs

    answer = answer_text(page)
    assert "<img src=x onerror=alert(1)>" in answer and "<script>window.__pwned=1</script>" in answer
    assert "click" in answer and "javascript:" not in answer  # the javascript: link is text only
    expect(page.get_by_test_id("lorechat-message-user")).to_have_text(question)
    card = page.get_by_test_id("lorechat-source-card").first
    expect(card).to_contain_text("Oddities <img src=x onerror=alert(1)>")
    expect(card.locator(".snippet")).to_contain_text("<script>window.__pwned=1</script>")
    expect(card.locator("a")).to_have_count(0)  # its url was javascript:, so the title is not a link


# ---- 3. stop ----------------------------------------------------------------------------------------------
def test_stop_ends_the_answer_and_the_server_stores_it_as_stopped(
    tab: Tab, live_app: LiveApp, fake_llm: ScriptedOpenAI
) -> None:
    fake_llm.default = Script(tokens=[f" word{i}" for i in range(60)], token_interval=0.2)
    page = tab.page
    page.goto(f"{live_app.origin}/creators/{CREATOR}")
    ask(page, "Tell me everything about salt.")
    page.wait_for_function(
        "() => (document.querySelector('lorechat-widget').shadowRoot"
        ".querySelector('[data-testid=\"lorechat-answer\"]')?.textContent ?? '').split('word').length > 3"
    )
    page.get_by_test_id("lorechat-stop").click()
    wait_status(page, "stopped", timeout=5_000)
    shown = answer_text(page)
    page.wait_for_timeout(800)  # four more token intervals: nothing may be added
    assert answer_text(page) == shown
    wait_status(page, "stopped")
    expect(page.get_by_test_id("lorechat-stop")).to_be_hidden()
    expect(page.get_by_test_id("lorechat-send")).to_be_visible()

    conversation_id = stored_session(page)["conversationId"]
    assert conversation_id
    stored = conversation(live_app, conversation_id)["messages"][-1]
    assert stored["role"] == "assistant" and stored["status"] == "stopped", stored
    shown_words, stored_words = shown.split(), stored["content"].split()
    assert 3 <= len(shown_words) and stored_words[: len(shown_words)] == shown_words
    assert len(stored_words) < 60
    assert fake_llm.wait_streams_closed(5)  # the upstream call was cancelled, not left running


def test_changing_the_heading_mid_answer_does_not_abort_it(
    tab: Tab, live_app: LiveApp, fake_llm: ScriptedOpenAI
) -> None:
    words = [f" word{i}" for i in range(12)]
    fake_llm.default = Script(tokens=words, token_interval=0.1)
    page = tab.page
    page.goto(f"{live_app.origin}/creators/{CREATOR}")
    ask(page, "Tell me about salt.")
    page.wait_for_function(
        "() => (document.querySelector('lorechat-widget').shadowRoot"
        ".querySelector('[data-testid=\"lorechat-answer\"]')?.textContent ?? '').includes('word2')"
    )
    page.evaluate("() => document.querySelector('lorechat-widget').setAttribute('heading', 'Ask the baker')")
    page.evaluate("() => document.querySelector('lorechat-widget').setAttribute('personality-weight', '0.9')")
    expect(page.locator("lorechat-widget h2#lc-title")).to_have_text("Ask the baker")
    wait_status(page, "done")  # kept streaming to the end: a presentation change is not a new conversation
    assert answer_text(page).split() == "".join(words).split()


# ---- 4. reload keeps the conversation ---------------------------------------------------------------------
def test_reload_keeps_the_conversation_and_a_follow_up_continues_it(
    tab: Tab, live_app: LiveApp, fake_llm: ScriptedOpenAI
) -> None:
    fake_llm.default = Script(tokens=["Two percent", " of the flour", " [1]."])
    page = tab.page
    page.goto(f"{live_app.origin}/creators/{CREATOR}")
    ask(page, "How much salt?")
    wait_status(page, "done")
    first_answer = answer_text(page)
    conversation_id = stored_session(page)["conversationId"]

    page.reload()
    expect(page.get_by_test_id("lorechat-message-user")).to_have_text(["How much salt?"])
    wait_status(page, "done")
    assert answer_text(page) == first_answer
    expect(last_assistant(page).get_by_test_id("lorechat-source-card").first).to_be_visible()

    with page.expect_request(lambda request: request.url.endswith("/api/v1/chat")) as sent:
        ask(page, "And when does it go in?")
    body = sent.value.post_data_json
    assert body["conversation_id"] == conversation_id
    assert body["personality_weight"] == 0.5  # the creator page shows the slider (personality="on")
    expect(page.locator(ASSISTANT)).to_have_count(2)
    wait_status(page, "done")
    assert stored_session(page)["conversationId"] == conversation_id
    roles = [m["role"] for m in conversation(live_app, conversation_id)["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    # The follow-up reached the model with the first turn as history.
    assert any("How much salt?" in str(m.get("content")) for m in fake_llm.requests[-1]["messages"])


# ---- 5. cross-origin embedding ----------------------------------------------------------------------------
def test_embedding_works_from_an_allowed_origin_and_is_refused_elsewhere(
    tab: Tab, live_app: LiveApp, fake_llm: ScriptedOpenAI, allowed_site: StaticSite, refused_site: StaticSite
) -> None:
    fake_llm.default = Script(tokens=["Ten grams", " of salt", " [1]."])
    allowed_site.pages["/embed.html"] = refused_site.pages["/embed.html"] = embed_page(live_app.origin, CREATOR)
    page = tab.page
    page.goto(f"{allowed_site.origin}/embed.html")
    expect(page.locator("lorechat-widget h2")).to_have_text("Ask Hazel Marsh")  # named from /api/v1/creators
    with page.expect_request(lambda request: request.url.endswith("/api/v1/chat")) as sent:
        ask(page, "How much salt for 500 g of flour?")
    assert sent.value.post_data_json["personality_weight"] == 0  # this page did not enable personality
    wait_status(page, "done")
    assert answer_text(page) == "Ten grams of salt [1]."
    conversation_id = stored_session(page)["conversationId"]

    # Stop mid-answer, cross-origin: the widget learns the id from X-Conversation-Id (exposed by CORS), so
    # it can ask the service to stop before `done`; without the header the turn would end "interrupted".
    fake_llm.default = Script(tokens=[f" word{i}" for i in range(60)], token_interval=0.2)
    ask(page, "Tell me everything about salt.")
    expect(last_assistant(page).get_by_test_id("lorechat-answer")).to_contain_text("word2")
    page.get_by_test_id("lorechat-stop").click()
    wait_status(page, "stopped", timeout=5_000)
    assert f"{live_app.origin}/api/v1/conversations/{conversation_id}/stop" in tab.requests
    assert conversation(live_app, conversation_id)["messages"][-1]["status"] == "stopped"
    upstream_calls = len(fake_llm.requests)
    screenshot(page, "embedded_allowed_origin")

    page.goto(f"{refused_site.origin}/embed.html")
    ask(page, "How much salt for 500 g of flour?")
    wait_status(page, "error")
    expect(page.get_by_test_id("lorechat-error")).to_be_visible()
    assert answer_text(page) == ""
    expect(page.get_by_test_id("lorechat-source-card")).to_have_count(0)
    assert len(fake_llm.requests) == upstream_calls  # refused before any work was done
    assert any("CORS" in line or "Access-Control" in line for line in tab.console), tab.console


# ---- 6. rate limited ----------------------------------------------------------------------------------------
@pytest.fixture
def limited_app(data_dir_copy: Callable[[], Path], llm: ScriptedOpenAI, widget_js: Path) -> Iterator[LiveApp]:
    """Its own app (and data dir) with one question per hour per IP."""
    app = LiveApp(app_settings(data_dir_copy(), llm_url=llm.base_url, cors_origins=[], ip_per_hour=1)).start()
    yield app
    app.stop()


def test_rate_limit_shows_a_polite_wait_and_keeps_the_question(
    tab: Tab, limited_app: LiveApp, fake_llm: ScriptedOpenAI
) -> None:
    fake_llm.default = Script(tokens=["Two", " percent."])
    page = tab.page
    page.goto(f"{limited_app.origin}/creators/{CREATOR}")
    ask(page, "How much salt?")
    wait_status(page, "done")
    ask(page, "And how much water?")

    notice = page.get_by_test_id("lorechat-rate-limit")
    expect(notice).to_be_visible()
    # An hour's window: the wait is said in minutes, not as "3600 s".
    expect(notice).to_have_text(re.compile(r"Please wait (59|60) min and try again"))
    expect(page.get_by_test_id("lorechat-input")).to_have_value("And how much water?")
    expect(page.get_by_test_id("lorechat-send")).to_be_disabled()
    expect(page.locator(ASSISTANT)).to_have_count(1)  # the refused question left no empty answer behind
    assert len(fake_llm.requests) == 1


# ---- 7. phone width -----------------------------------------------------------------------------------------
def test_phone_width_has_no_horizontal_overflow(tab: Tab, live_app: LiveApp, fake_llm: ScriptedOpenAI) -> None:
    long_url = "https://example.com/" + "a" * 180
    fake_llm.default = Script(
        tokens=[f"See {long_url} and ", "`" + "x" * 120 + "` ", "[1].\n\n```\n" + "y" * 200 + "\n```\n"]
    )
    page = tab.page
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(f"{live_app.origin}/creators/{CREATOR}")
    ask(page, "How much salt does Hazel use in a very long question that wraps over several lines?")
    wait_status(page, "done")
    time.sleep(0.2)  # the final layout pass

    sizes = page.evaluate(
        """() => {
      const el = document.querySelector("lorechat-widget");
      const root = el.shadowRoot;
      const box = (sel) => { const n = root.querySelector(sel); return [n.scrollWidth, n.clientWidth]; };
      const rect = el.getBoundingClientRect();
      return { doc: [document.documentElement.scrollWidth, window.innerWidth], left: rect.left, right: rect.right,
               panel: box(".panel"), messages: box(".messages"), form: box("form") };
    }"""
    )
    assert sizes["doc"][0] <= sizes["doc"][1], sizes  # the page cannot be scrolled sideways
    assert sizes["left"] >= 0 and sizes["right"] <= 360, sizes
    for part in ("panel", "messages", "form"):
        scroll, client = sizes[part]
        assert scroll <= client, (part, sizes)
