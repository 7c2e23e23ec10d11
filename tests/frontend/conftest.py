"""Browser-test harness: the demo corpus ingested once, the real app on uvicorn, tiny static and canary
servers on other origins, and real Chromium driven by Playwright (one fresh context per test)."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from backend.app import create_app
from backend.retrieval.embedder import Embedder
from backend.retrieval.search import Retriever
from backend.retrieval.stores.edge import EdgeStore
from backend.settings import (
    ChunkingSettings,
    DatabaseSettings,
    ExtractiveTierSettings,
    LimitSettings,
    LLMSettings,
    OpenAITierSettings,
    RedisSettings,
    RetrievalSettings,
    ServerSettings,
    Settings,
)
from tests.conftest import DEMO_CONTENT, REDIS_URL, REPO, indexer
from tests.data_dirs import copy_data_dir
from tests.fakes.openai_server import ScriptedOpenAI
from tests.live_server import LiveServer

WIDGET = REPO / "backend" / "static" / "widget.js"  # where scripts/build-frontend puts it for the service
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--headless",
]
XSS_CREATOR = "xss-lab"


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


# ---- tiny HTTP servers on their own origins -------------------------------------------------------------
@dataclass
class StaticSite:
    """Serves fixed pages (path → HTML) and records every request path it receives."""

    pages: dict[str, str] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StaticSite:
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.hits.append(self.path)
                page = site.pages.get(self.path.split("?", 1)[0])
                body = (page or "not found").encode()
                self.send_response(200 if page is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8" if page else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # the test output stays readable
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# ---- the real service -----------------------------------------------------------------------------------
@dataclass
class LiveApp:
    """create_app(settings) served by uvicorn on a free 127.0.0.1 port in a background thread."""

    settings: Settings
    port: int = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveApp:
        self._server = LiveServer(create_app(self.settings))
        self._server.start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        self._server.stop()


def app_settings(
    data_dir: Path, *, llm_url: str, cors_origins: list[str], ip_per_hour: int = 10_000, redis_url: str = ""
) -> Settings:
    # Every section the tests depend on is explicit, so neither config.yaml nor LORECHAT_* can change them.
    return Settings(
        data_dir=data_dir,
        database=DatabaseSettings(url=""),  # SQLite in the data dir
        # Empty: in-process limits, no resumable streams. A healthy Redis here: these tests replay streams, and a
        # CI machine whose cores are all busy can stall one flush past the production bound (0.1 s a call, four for
        # a round), which drops the round as a slow Redis should (test_stream_log.py covers that path).
        redis=RedisSettings(url=redis_url, timeout_seconds=1.0),
        retrieval=RetrievalSettings(),
        limits=LimitSettings(
            user_per_hour=10_000, ip_per_hour=ip_per_hour, creator_per_hour=10_000, concurrent_streams_per_ip=8
        ),
        llm=LLMSettings(
            tiers=[
                OpenAITierSettings(
                    name="scripted",
                    base_url=llm_url,
                    model="scripted",
                    first_token_timeout_seconds=5,  # roomy: a loaded CI box must not fall back to extractive
                    context_window=8192,  # a hosted model's window: history fits beside the sources
                ),
                ExtractiveTierSettings(
                    name="extractive",
                ),
            ]
        ),
        server=ServerSettings(cors_origins=cors_origins, keepalive_seconds=15),
    )


# ---- fixtures -------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def widget_js() -> Path:
    """The built widget; built here when missing. A failed build fails the tests (no silent skip)."""
    if not WIDGET.is_file():
        result = subprocess.run(
            ["bash", str(REPO / "scripts" / "build-frontend")], capture_output=True, text=True, check=False
        )
        if result.returncode != 0 or not WIDGET.is_file():
            pytest.fail(f"scripts/build-frontend failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return WIDGET


@pytest.fixture(scope="session")
def canary() -> Iterator[StaticSite]:
    """An origin nothing may ever reach: payloads point at it, and any hit is a failure."""
    site = StaticSite().start()
    yield site
    site.stop()


@pytest.fixture(scope="session")
def allowed_site() -> Iterator[StaticSite]:
    """A third-party page origin listed in cors_origins."""
    site = StaticSite().start()
    yield site
    site.stop()


@pytest.fixture(scope="session")
def refused_site() -> Iterator[StaticSite]:
    """A third-party page origin NOT in cors_origins."""
    site = StaticSite().start()
    yield site
    site.stop()


def payloads(canary_origin: str) -> str:
    """I7 payloads: raw HTML, an inline script, a javascript: link and a Markdown image to the canary."""
    return (
        "<img src=x onerror=alert(1)> <script>window.__pwned=1</script> "
        f"[click](javascript:alert(1)) ![x]({canary_origin}/pixel.png)"
    )


@pytest.fixture(scope="session")
def ingested(tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder, canary: StaticSite) -> Path:
    """A data dir holding the demo corpus plus one creator whose document carries the I7 payloads.

    The store is closed before returning: an Edge shard admits one open handle, and the app opens its own.
    Tests copy this dir (see `data_dir_copy`) so each app owns its files.
    """
    content = tmp_path_factory.mktemp("content") / "content"
    shutil.copytree(DEMO_CONTENT, content)
    lab = content / XSS_CREATOR
    lab.mkdir()
    (lab / "creator.yaml").write_text("name: Mallory's Test Kitchen\nbio: Pastes odd things.\n", encoding="utf-8")
    (lab / "payloads.md").write_text(
        "---\ntitle: 'Oddities <img src=x onerror=alert(1)>'\nurl: 'javascript:alert(1)'\n---\n"
        f"Pasted crumb notes: {payloads(canary.origin)} Keep the crumb open.\n",
        encoding="utf-8",
    )
    data_dir = tmp_path_factory.mktemp("data-seed")
    store = EdgeStore(data_dir / "index", hnsw_ef=128)
    try:
        retriever = Retriever(embedder=shared_embedder, store=store, settings=RetrievalSettings())
        chunking = ChunkingSettings(size_tokens=256, overlap_tokens=32)
        report = indexer(retriever, data_dir, chunking=chunking).ingest([content])
    finally:
        store.close()
    assert not report.failed, report.as_json()
    return data_dir


@pytest.fixture(scope="session")
def data_dir_copy(ingested: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], Path]:
    """A fresh copy of the ingested data dir: one app per data dir at a time."""

    def make() -> Path:
        target = tmp_path_factory.mktemp("data") / "data"
        copy_data_dir(ingested, target)
        return target

    return make


@pytest.fixture(scope="session")
def llm() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as fake:
        yield fake


@pytest.fixture
def fake_llm(llm: ScriptedOpenAI) -> ScriptedOpenAI:
    """The scripted upstream, with a clean record; tests set `default` to script every answer."""
    llm.requests.clear()
    return llm


@pytest.fixture(scope="session")
def live_app(
    widget_js: Path, data_dir_copy: Callable[[], Path], llm: ScriptedOpenAI, allowed_site: StaticSite
) -> Iterator[LiveApp]:
    settings = app_settings(data_dir_copy(), llm_url=llm.base_url, cors_origins=[allowed_site.origin])
    app = LiveApp(settings).start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def resumable_app(
    widget_js: Path, data_dir_copy: Callable[[], Path], llm: ScriptedOpenAI, allowed_site: StaticSite
) -> Iterator[LiveApp]:
    """The app with Redis, so it keeps answer streams: a visitor who drops off or reloads resumes the answer."""
    redis = urlsplit(REDIS_URL)
    try:
        socket.create_connection((redis.hostname or "127.0.0.1", redis.port or 6379), timeout=2).close()
    except OSError:
        message = f"Redis unreachable ({REDIS_URL})"
        if os.environ.get("LORECHAT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"LORECHAT_REQUIRE_SERVICES=1 but {message}")
        pytest.skip(message)
    settings = app_settings(
        data_dir_copy(), llm_url=llm.base_url, cors_origins=[allowed_site.origin], redis_url=REDIS_URL
    )
    app = LiveApp(settings).start()
    yield app
    app.stop()


# Module scope: Playwright's sync API keeps an event loop running on this thread while it lives, which
# would break every async test that runs after it in the same session.
@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    executable = os.environ.get("LORECHAT_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).is_file():
        pytest.fail(f"Chromium not found at {executable}: install Debian's chromium or set LORECHAT_TEST_CHROMIUM")
    browser = playwright_driver.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()


@dataclass
class Tab:
    """A page in a fresh context, with every request URL, dialog and console line it produced."""

    context: BrowserContext
    page: Page
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)


def open_tab(browser: Browser, *, width: int = 1280, height: int = 900) -> Tab:
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(10_000)
    page = context.new_page()
    tab = Tab(context=context, page=page)
    context.on("request", lambda request: tab.requests.append(request.url))

    def on_dialog(dialog: Any) -> None:
        tab.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("console", lambda message: tab.console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: tab.console.append(f"pageerror: {error}"))
    return tab


@pytest.fixture
def tab(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Tab]:
    """A fresh context per test (empty localStorage); a screenshot is kept as an artifact, pass or fail."""
    tab = open_tab(browser)
    yield tab
    screenshot(tab.page, request.node.name)
    tab.context.close()


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    try:
        page.screenshot(path=str(SCREENSHOTS / f"{safe}.png"), full_page=True)
    except Exception as exc:  # a crashed page must not hide the test's own failure
        print(f"screenshot {safe} failed: {exc}")
