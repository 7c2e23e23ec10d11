"""The demo knowledge site: creator pages with the chat widget embedded, and the built widget itself."""

from __future__ import annotations

import hashlib
from html import escape
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

from backend.api.deps import CatalogDep
from backend.catalog import CatalogCreator, CatalogDocument

router = APIRouter(tags=["site"], include_in_schema=False)

# scripts/build-frontend writes it; the site serves it straight from the checkout (or an installed copy).
WIDGET_PATH = Path(__file__).resolve().parents[2] / "frontend" / "dist" / "widget.js"
_CSS = (Path(__file__).resolve().parents[1] / "static" / "site.css").read_text(encoding="utf-8")

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


def get_widget_path(request: Request) -> Path:
    return getattr(request.app.state, "widget_path", None) or WIDGET_PATH


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
    cards = "".join(_creator_card(request, entry) for entry in entries) or (
        '<p class="empty">No creators yet. Add content and run <code>lorechat ingest</code>.</p>'
    )
    body = f"""
<section class="hero wrap">
  <h1>Ask the people who wrote it.</h1>
  <p>Articles, guides and talks from {len(entries)} creator{"" if len(entries) == 1 else "s"}, searchable in
  plain language. Every answer cites the passages it came from.</p>
</section>
<main class="wrap"><div class="grid">{cards}</div></main>
<lorechat-widget api="" mode="launcher" storage-key="site"></lorechat-widget>"""
    return _page(request, title="Lorechat — creators' knowledge, with sources", body=body)


@router.get("/creators/{slug}", response_class=HTMLResponse)
async def creator_page(request: Request, slug: str, catalog: CatalogDep) -> HTMLResponse:
    entry = catalog.creators.get(slug)
    if entry is None:
        body = f"""
<main class="wrap notfound">
  <h1>Creator not found</h1>
  <p>There is no creator called “{escape(slug)}” here.</p>
  <p><a href="{_url(request, "/")}">See all creators</a></p>
</main>"""
        return _page(request, title="Not found — Lorechat", body=body, status_code=404)
    creator = entry.creator
    docs = sorted(entry.documents.values(), key=lambda doc: (doc.published or "", doc.title), reverse=True)
    items = "".join(_document_item(doc) for doc in docs) or '<li class="meta">No documents yet.</li>'
    links = "".join(
        f'<a href="{escape(href)}" rel="noopener noreferrer">{escape(urlsplit(href).netloc or href)}</a>'
        for href in (_safe_href(link) for link in creator.links)
        if href
    )
    body = f"""
<section class="profile wrap">
  <p class="crumbs"><a href="{_url(request, "/")}">All creators</a></p>
  <div class="who">{_avatar(creator.slug, creator.name)}<h1>{escape(creator.name)}</h1></div>
  {f'<p class="bio">{escape(creator.bio)}</p>' if creator.bio else ""}
  {f'<div class="links">{links}</div>' if links else ""}
</section>
<main class="wrap layout">
  <section aria-labelledby="library">
    <h2 class="section" id="library">{_count(len(docs), "document")} in the library</h2>
    <ul class="docs">{items}</ul>
  </section>
  <aside class="chat" aria-label="Chat with {escape(creator.name)}">
    <lorechat-widget api="" mode="inline" creator="{escape(creator.slug)}" personality="on"
      heading="Ask {escape(creator.name)}"></lorechat-widget>
  </aside>
</main>"""
    return _page(request, title=f"{creator.name} — Lorechat", body=body)


def _page(request: Request, *, title: str, body: str, status_code: int = 200) -> HTMLResponse:
    html = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="icon" href="data:,">
<style>{_CSS}</style>
<script src="{_url(request, "/widget.js")}" defer></script>
</head>
<body>
<header class="top"><div class="wrap">
  <a class="brand" href="{_url(request, "/")}">lore<span>chat</span></a>
  <nav>Knowledge chat for creators</nav>
</div></header>
{body}
<footer><div class="wrap">Answers are generated from the creators' own content and may be wrong; check the
cited sources.</div></footer>
</body>
</html>"""
    return HTMLResponse(html, status_code=status_code, headers=_PAGE_HEADERS)


def _creator_card(request: Request, entry: CatalogCreator) -> str:
    creator = entry.creator
    docs = entry.documents.values()
    talks = sum(1 for doc in docs if doc.kind == "transcript")
    pills = [_count(len(docs), "document")]
    if talks:
        pills.append(_count(talks, "talk"))
    pills.append(_count(sum(doc.chunks for doc in docs), "passage"))
    bio = creator.bio if len(creator.bio) <= 220 else creator.bio[:217].rstrip() + "…"
    href = _url(request, f"/creators/{quote(creator.slug, safe='')}")
    return f"""
<article class="card">
  <div class="who">{_avatar(creator.slug, creator.name)}<h2><a href="{href}">{escape(creator.name)}</a></h2></div>
  <p>{escape(bio)}</p>
  <div class="stats">{"".join(f'<span class="pill">{escape(p)}</span>' for p in pills)}</div>
</article>"""


def _document_item(doc: CatalogDocument) -> str:
    href = _safe_href(doc.url) if doc.url else None
    title = escape(doc.title or doc.source)
    link = f'<a href="{escape(href)}" rel="noopener noreferrer">{title}</a>' if href else title
    meta = []
    if doc.duration_seconds:
        meta.append(_duration(doc.duration_seconds))
    if doc.published:
        meta.append(doc.published[:10])
    kind = doc.kind if doc.kind in _KIND_LABELS else "text"
    return (
        f'<li><span class="kind kind-{kind}">{_KIND_LABELS.get(kind, "Text")}</span>'
        f'<span class="title">{link}</span><span class="meta">{escape(" · ".join(meta))}</span></li>'
    )


def _avatar(slug: str, name: str) -> str:
    # A stable colour per creator, so cards are told apart at a glance without images.
    hue = int(hashlib.sha256(slug.encode()).hexdigest()[:4], 16) % 360
    initial = escape((name.strip()[:1] or "?").upper())
    return f'<span class="avatar" aria-hidden="true" style="background:hsl({hue} 55% 45%)">{initial}</span>'


def _safe_href(url: str) -> str | None:
    """Only absolute http(s) links reach a page: catalog data came from curator files."""
    parts = urlsplit(url.strip())
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def _url(request: Request, path: str) -> str:
    return escape(request.scope.get("root_path", "").rstrip("/") + path)


def _duration(seconds: float) -> str:
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
