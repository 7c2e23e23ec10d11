"""The demo site router alone, on a small catalog: pages, escaping, the widget tag and /widget.js."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from backend.api.site import get_widget_path, router
from backend.catalog import Catalog, CatalogCreator, CatalogDocument
from backend.stages import Creator

EVIL = "<script>alert(1)</script>"


def _catalog() -> Catalog:
    ada = CatalogCreator(
        creator=Creator(slug="ada", name="Ada Lovelace", bio="Notes on engines.", links=("https://ada.test/",)),
        documents={
            "d1": CatalogDocument(
                document_id="d1",
                title="The Analytical Engine",
                source="articles/engine.md",
                url="https://ada.test/engine",
                kind="article",
                chunks=4,
                published="1843-09-01",
            ),
            "d2": CatalogDocument(
                document_id="d2",
                title="Talk: Bernoulli numbers",
                source="talks/bernoulli.vtt",
                url="https://video.test/b",
                kind="transcript",
                chunks=7,
                duration_seconds=3725.4,
            ),
            "d3": CatalogDocument(
                document_id="d3",
                title="Sneaky",
                source="pages/x.html",
                url="javascript:alert(1)",
                kind="page",
                chunks=1,
            ),
        },
    )
    evil = CatalogCreator(
        creator=Creator(slug="mallory", name=EVIL, bio='"><img src=x onerror=alert(2)>', links=("javascript:x",)),
        documents={
            "e1": CatalogDocument(
                document_id="e1", title=f"{EVIL} title", source="a.md", url=None, kind="text", chunks=1
            ),
        },
    )
    return Catalog(creators={"ada": ada, "mallory": evil})


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    app = FastAPI()
    app.include_router(router)
    app.state.catalog = _catalog()
    app.dependency_overrides[get_widget_path] = lambda: tmp_path / "widget.js"
    return app


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    return TestClient(app)


def test_home_lists_creators_with_counts_and_a_launcher_widget(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert 'href="/creators/ada"' in html and "Ada Lovelace" in html and "Notes on engines." in html
    assert "3 documents" in html and "1 talk" in html and "12 passages" in html
    assert '<lorechat-widget api="" mode="launcher"' in html
    assert 'creator="' not in html  # the site-wide widget offers the creator picker
    assert '<script src="/widget.js" defer></script>' in html
    assert "connect-src 'self'" in response.headers["content-security-policy"]


def test_creator_page_lists_documents_and_embeds_a_scoped_widget(client: TestClient) -> None:
    html = client.get("/creators/ada").text
    assert '<a href="https://ada.test/engine" rel="noopener noreferrer">The Analytical Engine</a>' in html
    assert "Talk: Bernoulli numbers" in html and "1:02:05" in html and "1843-09-01" in html
    assert 'class="kind kind-transcript">Talk<' in html and 'class="kind kind-article">Article<' in html
    assert "javascript:" not in html  # unsafe document link shown as text only
    assert "Sneaky" in html
    assert 'mode="inline" creator="ada" personality="on"' in html
    assert 'href="https://ada.test/"' in html


def test_creator_names_and_bios_are_escaped(client: TestClient) -> None:
    for path in ("/", "/creators/mallory"):
        html = client.get(path).text
        assert EVIL not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<img" not in html and "javascript:" not in html


def test_unknown_creator_is_a_404_page_with_the_slug_escaped(client: TestClient) -> None:
    response = client.get("/creators/%3Cscript%3Ealert(1)")
    assert response.status_code == 404
    assert "Creator not found" in response.text
    assert "<script>alert" not in response.text and "&lt;script&gt;alert(1)" in response.text


def test_widget_js_is_served_with_a_js_type_and_short_cache(app: FastAPI, client: TestClient) -> None:
    widget = app.dependency_overrides[get_widget_path]()
    widget.write_text("customElements.define('lorechat-widget', class extends HTMLElement {});")
    response = client.get("/widget.js")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert "lorechat-widget" in response.text


def test_widget_js_not_built_is_a_clear_503(client: TestClient) -> None:
    response = client.get("/widget.js")
    assert response.status_code == 503
    assert "scripts/build-frontend" in response.text


def test_without_a_catalog_the_home_page_says_how_to_add_content() -> None:
    app = FastAPI()
    app.include_router(router)
    html = TestClient(app).get("/").text
    assert "No creators yet" in html and "lorechat ingest" in html


def test_a_quote_in_a_creator_name_cannot_leave_its_attribute() -> None:
    # The name lands inside aria-label="…" and heading="…": autoescaping must escape quotes, not only <>.
    name = 'Eve" onfocus="alert(3)'
    entry = CatalogCreator(creator=Creator(slug="eve", name=name), documents={})
    app = FastAPI()
    app.include_router(router)
    app.state.catalog = Catalog(creators={"eve": entry})
    html = TestClient(app).get("/creators/eve").text
    assert 'onfocus="alert(3)' not in html
    assert "Eve&#34; onfocus=&#34;alert(3)" in html
