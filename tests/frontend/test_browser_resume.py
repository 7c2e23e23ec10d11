"""The widget resumes an answer by itself, in real Chromium against the real service with Redis (resumable
streams): after a network drop mid-answer (every connection cut by a proxy), and after a page reload mid-answer.
Either way the visitor ends with the whole answer, nothing repeated, as the service stored it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.fakes.openai_server import Script, ScriptedOpenAI
from tests.frontend.conftest import LiveApp, StaticSite, Tab, screenshot
from tests.frontend.test_browser import CREATOR, answer_text, ask, conversation, stored_session, wait_status

pytestmark = [pytest.mark.browser, pytest.mark.services]

# Three seconds of answer at best, more on a loaded machine: room to break in after a few words.
WORDS = [f" word{i}" for i in range(60)]
ANSWER = "".join(WORDS).split()


def slow() -> Script:
    return Script(tokens=WORDS, token_interval=0.05)


class CuttableProxy:
    """A TCP proxy in front of the app whose open connections can all be cut at once: a network drop. It keeps
    accepting afterwards, so a reconnect gets through."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.accepted = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CuttableProxy:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def cut(self) -> int:
        """End every open connection in both directions; how many there were."""
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pumps, which close it
            except OSError:
                pass
        return len(sockets) // 2

    def stop(self) -> None:
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
                self.accepted += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            with self._lock:
                self._open = [sock for sock in self._open if sock not in (source, sink)]


@pytest.fixture
def proxy(resumable_app: LiveApp) -> Iterator[CuttableProxy]:
    proxy = CuttableProxy(resumable_app.port).start()
    yield proxy
    proxy.stop()


# Records every text the answer showed: each must be the start of the final answer (nothing shown twice).
ANSWER_LOG_JS = """() => {
  const root = document.querySelector("lorechat-widget").shadowRoot;
  window.__answers = [];
  const snap = () => {
    const msgs = root.querySelectorAll('[data-testid="lorechat-message-assistant"]');
    const answer = msgs.length ? msgs[msgs.length - 1].querySelector('[data-testid="lorechat-answer"]') : null;
    if (answer) window.__answers.push(answer.textContent);
  };
  new MutationObserver(snap).observe(root, { subtree: true, childList: true, characterData: true });
}"""


def words_shown(page: Page) -> int:
    return int(
        page.evaluate(
            "() => (document.querySelector('lorechat-widget').shadowRoot"
            ".querySelector('[data-testid=\"lorechat-answer\"]')?.textContent ?? '').split('word').length - 1"
        )
    )


def wait_words(page: Page, count: int) -> None:
    page.wait_for_function(
        "(n) => (document.querySelector('lorechat-widget').shadowRoot"
        ".querySelector('[data-testid=\"lorechat-answer\"]')?.textContent ?? '').split('word').length - 1 >= n",
        arg=count,
        timeout=20_000,
    )


def stored_answer(app: LiveApp, conversation_id: str) -> dict[str, Any]:
    """The conversation's last message once the service has settled it (its final write follows `done`)."""
    deadline = time.monotonic() + 15
    while True:
        last: dict[str, Any] = conversation(app, conversation_id)["messages"][-1]
        if last["status"] != "streaming" or time.monotonic() > deadline:
            return last
        time.sleep(0.2)


def assert_whole_answer(page: Page, app: LiveApp) -> None:
    """The widget shows the whole answer once, done, as the service stored it; and never showed a repeat."""
    wait_status(page, "done", timeout=45_000)
    shown = answer_text(page)
    assert shown.split() == ANSWER, shown
    expect(page.get_by_test_id("lorechat-error")).to_have_count(0)
    expect(page.get_by_test_id("lorechat-stop")).to_be_hidden()
    for seen in page.evaluate("window.__answers"):
        assert seen.split() == ANSWER[: len(seen.split())], seen
    conversation_id = stored_session(page)["conversationId"]
    stored = stored_answer(app, conversation_id)
    assert stored["role"] == "assistant" and stored["status"] == "done", stored
    assert stored["content"].split() == shown.split()
    assert stored_session(page)["messages"][-1]["status"] == "done"


def embed_page(api: str, widget_origin: str) -> str:
    """A third-party page whose widget talks to the service through `api` (the proxy)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Resume page</title>
<script src="{widget_origin}/widget.js" defer></script></head>
<body><lorechat-widget api="{api}" mode="inline" creator="{CREATOR}"></lorechat-widget></body></html>"""


# ---- 1. the network drops mid-answer --------------------------------------------------------------------------
def test_a_dropped_connection_is_resumed_and_the_answer_ends_whole(
    tab: Tab, resumable_app: LiveApp, fake_llm: ScriptedOpenAI, allowed_site: StaticSite, proxy: CuttableProxy
) -> None:
    fake_llm.default = slow()
    allowed_site.pages["/resume.html"] = embed_page(proxy.origin, resumable_app.origin)
    page = tab.page
    page.goto(f"{allowed_site.origin}/resume.html")
    expect(page.get_by_test_id("lorechat-input")).to_be_visible()
    page.evaluate(ANSWER_LOG_JS)

    ask(page, "Tell me everything about salt.")
    wait_words(page, 5)
    assert proxy.cut() >= 1  # the chat stream's connection, at least
    cut_at = words_shown(page)
    assert cut_at < len(WORDS), "the answer ended before the cut: nothing was resumed"

    assert_whole_answer(page, resumable_app)
    resumes = [url for url in tab.requests if url.endswith("/stream")]
    assert resumes and all(url.startswith(proxy.origin) for url in resumes), tab.requests
    assert len(fake_llm.requests) == 1  # the service went on with the same answer; it did not ask again
    screenshot(page, "resumed_after_network_drop")


# ---- 2. the page is reloaded mid-answer -------------------------------------------------------------------------
def test_a_reload_mid_answer_replays_it_and_follows_it_to_the_end(
    tab: Tab, resumable_app: LiveApp, fake_llm: ScriptedOpenAI
) -> None:
    fake_llm.default = slow()
    page = tab.page
    page.goto(f"{resumable_app.origin}/creators/{CREATOR}")
    ask(page, "Tell me everything about salt.")
    wait_words(page, 5)
    conversation_id = stored_session(page)["conversationId"]  # saved as soon as the service named it
    assert conversation_id

    with page.expect_request(lambda request: request.url.endswith(f"/conversations/{conversation_id}/stream")) as sent:
        page.reload()
    assert sent.value.headers.get("last-event-id") is None  # from the start: the page kept no events
    page.evaluate(ANSWER_LOG_JS)
    expect(page.get_by_test_id("lorechat-message-user")).to_have_text(["Tell me everything about salt."])
    assert_whole_answer(page, resumable_app)
    assert stored_session(page)["conversationId"] == conversation_id
    assert len(fake_llm.requests) == 1
