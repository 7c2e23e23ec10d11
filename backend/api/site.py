"""The demo knowledge site: creator pages with the chat widget embedded, and the built widget itself.

Pages are Jinja2 templates (backend/templates) with autoescaping on: every value from the catalog (curator
files) is escaped unless a template says otherwise, so no forgotten escape() call can become an XSS.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from backend.api.deps import CatalogDep
from backend.catalog import CatalogCreator, CatalogDocument
from backend.stages import format_timestamp

router = APIRouter(tags=["site"], include_in_schema=False)

# Package data, so an installed wheel serves them too: scripts/build-frontend copies the built widget here.
STATIC = Path(__file__).resolve().parents[1] / "static"
WIDGET_PATH = STATIC / "widget.js"
_CSS = Markup((STATIC / "site.css").read_text(encoding="utf-8"))  # our own file, inlined as is
_TEMPLATES = Environment(
    loader=PackageLoader("backend", "templates"), autoescape=select_autoescape(default=True, default_for_string=True)
)

# Pages load only our own script and talk only to our own API: model output rendered by the widget cannot
# make the browser fetch anything elsewhere (I7), even if the widget's sanitizer had a hole.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'"
    ),
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
_KIND_LABELS = {"transcript": "Talk", "pdf": "PDF", "article": "Article", "page": "Page", "record": "Note"}


def get_widget_path() -> Path:
    return WIDGET_PATH


WidgetPathDep = Annotated[Path, Depends(get_widget_path)]


@router.get("/widget.js")
async def widget_js(path: WidgetPathDep) -> Response:
    if not path.is_file():
        return PlainTextResponse(
            "widget.js is not built yet: run scripts/build-frontend (needs Node.js 20+ and npm).\n",
            status_code=503,
            headers={"Cache-Control": "no-store"},
        )
    # Short cache: a rebuilt widget reaches visitors within minutes without fingerprinted file names.
    return FileResponse(
        path,
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, catalog: CatalogDep) -> HTMLResponse:
    entries = sorted(catalog.creators.values(), key=lambda entry: entry.creator.name.lower())
    cards = [_creator_card(entry) for entry in entries]
    return _page(request, "home.html", title="Lorechat — creators' knowledge, with sources", cards=cards)


@router.get("/creators/{slug}", response_class=HTMLResponse)
async def creator_page(request: Request, slug: str, catalog: CatalogDep) -> HTMLResponse:
    entry = catalog.creators.get(slug)
    if entry is None:
        return _page(request, "not_found.html", title="Not found — Lorechat", slug=slug, status_code=404)
    creator = entry.creator
    docs = sorted(entry.documents.values(), key=lambda doc: (doc.published or "", doc.title), reverse=True)
    links = [
        {"href": href, "label": urlsplit(href).netloc or href}
        for href in (_safe_href(link) for link in creator.links)
        if href
    ]
    return _page(
        request,
        "creator.html",
        title=f"{creator.name} — Lorechat",
        creator=creator,
        links=links,
        documents=[_document_item(doc) for doc in docs],
    )


def _page(request: Request, template: str, *, title: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    html = _TEMPLATES.get_template(template).render(
        title=title, css=_CSS, url=lambda path: root + path, avatar=_avatar, count=_count, **values
    )
    return HTMLResponse(html, status_code=status_code, headers=_PAGE_HEADERS)


def _creator_card(entry: CatalogCreator) -> dict[str, Any]:
    creator = entry.creator
    docs = entry.documents.values()
    talks = sum(1 for doc in docs if doc.kind == "transcript")
    pills = [_count(len(docs), "document")]
    if talks:
        pills.append(_count(talks, "talk"))
    pills.append(_count(sum(doc.chunks for doc in docs), "passage"))
    bio = creator.bio if len(creator.bio) <= 220 else creator.bio[:217].rstrip() + "…"
    return {"slug": creator.slug, "name": creator.name, "bio": bio, "pills": pills}


def _document_item(doc: CatalogDocument) -> dict[str, Any]:
    meta = []
    if doc.duration_seconds:
        meta.append(format_timestamp(doc.duration_seconds))
    if doc.published:
        meta.append(doc.published[:10])
    kind = doc.kind if doc.kind in _KIND_LABELS else "text"
    return {
        "kind": kind,
        "label": _KIND_LABELS.get(kind, "Text"),
        "title": doc.title or doc.source,
        "href": _safe_href(doc.url) if doc.url else None,
        "meta": " · ".join(meta),
    }


def _avatar(slug: str, name: str) -> Markup:
    # A stable colour per creator, so cards are told apart at a glance without images.
    hue = int(hashlib.sha256(slug.encode()).hexdigest()[:4], 16) % 360
    initial = escape((name.strip()[:1] or "?").upper())
    return Markup('<span class="avatar" aria-hidden="true" style="background:hsl({} 55% 45%)">{}</span>').format(
        hue, initial
    )


def _safe_href(url: str) -> str | None:
    """Only absolute http(s) links reach a page: catalog data came from curator files."""
    parts = urlsplit(url.strip())
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
