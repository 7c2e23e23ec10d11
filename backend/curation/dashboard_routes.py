"""The curator dashboard at /admin: server-rendered pages behind the admin token, every table exportable.

Login exchanges the admin token for an HttpOnly, SameSite=Strict session cookie (backend/curation/admin_session.py).
Without a valid session a visitor gets only the login form: pages redirect to it, exports answer 401. Forms
carry a per-session CSRF token and a POST from another origin is refused. Disabled (404) without a token.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from backend.api.deps import (
    CatalogDep,
    ClientIpDep,
    CredentialsDep,
    SessionsDep,
    SettingsDep,
    client_ip_of,
    credentials_of,
)
from backend.catalog import Catalog
from backend.client_ip import public_scheme_and_host
from backend.curation import admin_session, answers_store, gaps_store, sites_store
from backend.curation.dashboard import TABLES, JobsReader, Table, build_table, jobs_table, refresh_gap_inbox
from backend.curation.origins import origin_or_none
from backend.errors import ErrorCode, LorechatError
from backend.ids import require_id
from backend.settings import Settings
from backend.storage.models import utcnow

router = APIRouter(prefix="/admin", tags=["admin"], include_in_schema=False)

_TEMPLATES = Environment(
    loader=PackageLoader("backend", "templates"), autoescape=select_autoescape(default=True, default_for_string=True)
)
_HEADERS = {
    # No script at all; forms post only here; never framed (clickjacking a "resolve" button).
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    # same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on our own form posts.
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
# Our forms carry two or three fields; `&&&` counts as fields too, so leave room, but bound the parse.
_MAX_FORM_FIELDS = 20
_FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def _admin_token(request: Request) -> str:
    settings: Settings = request.app.state.settings
    token = admin_session.admin_token(settings.auth)
    if not token:
        raise LorechatError(ErrorCode.not_found, "Not found")
    return token


AdminTokenDep = Annotated[str, Depends(_admin_token)]


async def _session(request: Request, token: str, ip: str) -> str | None:
    """The caller's valid session cookie (or None); a bearer admin token is accepted too, for scripts.

    Whatever credential is presented is checked through the credential guard, so a locked-out address gets 429
    before its cookie or token is evaluated."""
    cookie = request.cookies.get(admin_session.COOKIE)
    scheme, _, given = (request.headers.get("authorization") or "").partition(" ")
    guard = credentials_of(request)
    if cookie:
        valid: bool = await guard.check(ip, lambda: admin_session.valid_session(cookie, token))
        if valid:
            return cookie
    if scheme.lower() == "bearer":
        matches: bool = await guard.check(ip, lambda: admin_session.token_matches(given.strip(), token))
        if matches:
            return ""
    return None


def _same_origin(request: Request) -> bool:
    # Browsers send Origin on every POST; one naming another site is a cross-site form (CSRF), refused. "Same"
    # means the origin the browser used, which behind a trusted proxy is what it forwards (backend/client_ip.py);
    # both sides go through the one origin parser (backend/curation/sites.py), so a malformed header matches nothing.
    origin = request.headers.get("origin")
    if origin is None:
        return True
    public = _public_origin(request)
    return public is not None and origin_or_none(origin) == public


def _public_origin(request: Request) -> str | None:
    settings: Settings = request.app.state.settings
    peer = request.client.host if request.client else None
    scheme, host = public_scheme_and_host(peer, request.url.scheme, request.headers, settings.limits.trusted_proxies)
    return origin_or_none(f"{scheme}://{host}")


async def _form(request: Request) -> dict[str, str]:
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise LorechatError(ErrorCode.invalid_input, "Expected a form")
    try:
        fields = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=_MAX_FORM_FIELDS)
    except ValueError:  # more fields than any of our forms has
        raise LorechatError(ErrorCode.invalid_input, "Too many form fields") from None
    return {name: values[0] for name, values in fields.items()}


def _page(template: str, *, status_code: int = 200, **values: Any) -> HTMLResponse:
    html = _TEMPLATES.get_template(f"admin/{template}").render(**values)
    return HTMLResponse(html, status_code=status_code, headers=_HEADERS)


def _to_login() -> RedirectResponse:
    return RedirectResponse("/admin/login", status_code=303, headers=_HEADERS)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, token: AdminTokenDep, ip: ClientIpDep) -> Response:
    if await _session(request, token, ip) is not None:
        return RedirectResponse("/admin", status_code=303, headers=_HEADERS)
    return _page("login.html", title="Curator sign-in — lorechat", error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request, token: AdminTokenDep, settings: SettingsDep, guard: CredentialsDep, ip: ClientIpDep
) -> Response:
    if not _same_origin(request):
        raise LorechatError(ErrorCode.forbidden, "Cross-site request refused")
    form = await _form(request)
    try:
        # Refused before the token is compared once the address spent its failures: 429 says nothing of the guess.
        right = await guard.check(ip, lambda: admin_session.token_matches(form.get("token", ""), token))
    except LorechatError as exc:
        if exc.retry_after is None:
            raise
        page = _page(
            "login.html", title="Curator sign-in — lorechat", status_code=exc.status,
            error=f"Too many attempts. Try again in {exc.retry_after} s.",
        )  # fmt: skip
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    if not right:
        return _page(
            "login.html", title="Curator sign-in — lorechat", error="That token is not right.", status_code=401
        )
    lifetime = settings.sites.admin_session_hours * 3600
    response = RedirectResponse("/admin", status_code=303, headers=_HEADERS)
    response.set_cookie(
        admin_session.COOKIE, admin_session.new_session(token, lifetime_seconds=lifetime), max_age=int(lifetime),
        path="/admin", httponly=True, samesite="strict",
        secure=(_public_origin(request) or "").startswith("https://"),
    )  # fmt: skip
    return response


@router.post("/logout")
async def logout(request: Request, token: AdminTokenDep) -> Response:
    await _checked_post(request, token)
    response = _to_login()
    response.delete_cookie(admin_session.COOKIE, path="/admin", httponly=True, samesite="strict")
    return response


async def _checked_post(request: Request, token: str) -> dict[str, str]:
    """A dashboard form post: a valid session cookie, the same origin, and the session's CSRF token."""
    cookie = request.cookies.get(admin_session.COOKIE)
    ip = client_ip_of(request)
    if cookie is None or not await credentials_of(request).check(
        ip, lambda: admin_session.valid_session(cookie, token)
    ):
        raise LorechatError(ErrorCode.unauthorized, "Sign in at /admin/login")
    form = await _form(request)
    if not _same_origin(request) or not admin_session.csrf_matches(form.get("csrf"), cookie, token):
        raise LorechatError(ErrorCode.forbidden, "Cross-site request refused")
    return form


@router.get("", response_class=HTMLResponse)
async def dashboard(
    request: Request, token: AdminTokenDep, sessions: SessionsDep, catalog: CatalogDep, ip: ClientIpDep
) -> Response:
    cookie = await _session(request, token, ip)
    if cookie is None:
        return _to_login()
    settings: Settings = request.app.state.settings
    await refresh_gap_inbox(sessions, settings, request.state.retriever.embedder.embed_documents)
    tables = [await build_table(name, sessions=sessions, catalog=catalog) for name in TABLES]
    reader: JobsReader | None = request.app.state.jobs
    if reader is not None:  # jobs.engine temporal: the jobs on the workers, beside the runs they recorded
        tables.insert(TABLES.index("ingest_runs"), await jobs_table(reader))
    creators = sorted((slug, entry.creator.name) for slug, entry in catalog.creators.items())
    sites = [site.name for site in await sites_store.list_sites(sessions)]
    return _page(
        "dashboard.html", title="Curator dashboard — lorechat", tables=tables, creators=creators, sites=sites,
        csrf=admin_session.csrf_token(cookie, token) if cookie else "", signed_in=bool(cookie),
    )  # fmt: skip


@router.post("/gaps/{topic_id}/resolve")
async def resolve_gap(topic_id: str, request: Request, token: AdminTokenDep, sessions: SessionsDep) -> Response:
    await _checked_post(request, token)
    topic_id = require_id(topic_id, what="gap topic")  # after the sign-in check: anonymous callers learn nothing
    if not await gaps_store.resolve_topic(sessions, topic_id=topic_id, when=utcnow()):
        raise LorechatError(ErrorCode.not_found, "No such gap topic")
    return RedirectResponse("/admin#gaps", status_code=303, headers=_HEADERS)


@router.get("/export/{name}.{fmt}")
async def export(
    name: str,
    fmt: str,
    request: Request,
    token: AdminTokenDep,
    sessions: SessionsDep,
    catalog: CatalogDep,
    ip: ClientIpDep,
) -> Response:
    if await _session(request, token, ip) is None:
        raise LorechatError(ErrorCode.unauthorized, "Sign in at /admin/login")
    reader: JobsReader | None = request.app.state.jobs
    if not (name in TABLES or (name == "jobs" and reader is not None)) or fmt not in _FORMATS:
        raise LorechatError(ErrorCode.not_found, "No such export")
    if name == "gaps":
        await refresh_gap_inbox(sessions, request.app.state.settings, request.state.retriever.embedder.embed_documents)
    table: Table
    if name == "jobs" and reader is not None:
        table = await jobs_table(reader, limit=1000)
        if table.note:  # an export that silently lacks every job would mislead
            raise LorechatError(ErrorCode.index_unavailable, table.note, retry_after=5)
    else:
        table = await build_table(name, sessions=sessions, catalog=catalog)
    body = table.as_csv() if fmt == "csv" else table.as_json()
    headers = {**_HEADERS, "Content-Disposition": f'attachment; filename="lorechat-{name}.{fmt}"'}
    return Response(body, media_type=_FORMATS[fmt], headers=headers)


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, request: Request, token: AdminTokenDep) -> Response:
    """Cancel a running ingest job between batches (as `lorechat jobs cancel`): what it wrote stays, recorded."""
    await _checked_post(request, token)
    reader: JobsReader | None = request.app.state.jobs
    if reader is None:
        raise LorechatError(ErrorCode.not_found, "No such job")
    # The jobs client's own id gate (pipeline/jobs/model.py) refuses anything it did not make, before Temporal.
    await anyio.to_thread.run_sync(reader.cancel, job_id)
    return RedirectResponse("/admin#jobs", status_code=303, headers=_HEADERS)


# ---- curated answers and starter questions (issue 40) --------------------------------------------------------


async def _signed_in(request: Request, token: str, ip: str) -> str | None:
    """The session cookie of a signed-in curator ("" for a bearer token), None for anyone else."""
    return await _session(request, token, ip)


async def _written(request: Request) -> None:
    """A curated write from this replica is served by it at once (the others see it within curated.refresh_seconds)."""
    curated = getattr(request.state, "curated", None)
    if curated is not None:
        await curated.refresh(force=True)


def _lines(value: str | None) -> list[str]:
    return [line.strip() for line in (value or "").splitlines() if line.strip()]


def _answer_page(
    *, request: Request, cookie: str, token: str, catalog: Catalog, values: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    creators = sorted((slug, entry.creator.name) for slug, entry in catalog.creators.items())
    documents = {
        slug: sorted((doc_id, doc.title or doc.source) for doc_id, doc in entry.documents.items())
        for slug, entry in catalog.creators.items()
    }
    return _page(
        "answer.html", title="Curated answer — lorechat", status_code=status_code, creators=creators,
        documents=documents, csrf=admin_session.csrf_token(cookie, token) if cookie else "", signed_in=bool(cookie),
        **values,
    )  # fmt: skip


@router.get("/answers/new", response_class=HTMLResponse)
async def new_answer(
    request: Request, token: AdminTokenDep, sessions: SessionsDep, catalog: CatalogDep, ip: ClientIpDep,
    topic: str | None = None,
) -> Response:  # fmt: skip
    """The form for a new curated answer; from a gap topic, its example questions and sources prefilled."""
    cookie = await _signed_in(request, token, ip)
    if cookie is None:
        return _to_login()
    found = await gaps_store.get_topic(sessions, topic_id=topic) if topic else None
    values: dict[str, Any] = {
        "answer_id": None, "topic": found, "creator": found.creator if found else "",
        "questions": "\n".join(found.examples) if found else "", "answer": "",
        "documents_text": "\n".join(str(s["document_id"]) for s in found.sources if s.get("document_id"))
        if found else "",
        "error": None, "history": [],
    }  # fmt: skip
    return _answer_page(request=request, cookie=cookie, token=token, catalog=catalog, values=values)


@router.post("/answers")
async def create_answer(request: Request, token: AdminTokenDep, sessions: SessionsDep, catalog: CatalogDep) -> Response:
    form = await _checked_post(request, token)
    creator = form.get("creator") or None
    topic = form.get("topic") or None
    if creator is not None and catalog.creator(creator) is None:
        raise LorechatError(ErrorCode.unknown_creator, f"Unknown creator '{creator}'")
    if topic is not None:
        topic = require_id(topic, what="gap topic")
    try:
        await answers_store.add_answer(
            sessions, creator=creator, questions=_lines(form.get("questions")), answer=form.get("answer", ""),
            documents=_lines(form.get("documents")), topic_id=topic,
        )  # fmt: skip
    except LorechatError as exc:
        if exc.code not in (ErrorCode.invalid_input, ErrorCode.not_found):
            raise
        values: dict[str, Any] = {
            "answer_id": None, "topic": await gaps_store.get_topic(sessions, topic_id=topic) if topic else None,
            "creator": creator or "", "questions": form.get("questions", ""), "answer": form.get("answer", ""),
            "documents_text": form.get("documents", ""), "error": exc.message, "history": [],
        }  # fmt: skip
        cookie = request.cookies.get(admin_session.COOKIE, "")
        return _answer_page(
            request=request, cookie=cookie, token=token, catalog=catalog, values=values, status_code=exc.status
        )
    await _written(request)
    return RedirectResponse("/admin#answers", status_code=303, headers=_HEADERS)


@router.get("/answers/{answer_id}", response_class=HTMLResponse)
async def edit_answer_form(
    answer_id: str, request: Request, token: AdminTokenDep, sessions: SessionsDep, catalog: CatalogDep, ip: ClientIpDep,
    topic: str | None = None,
) -> Response:  # fmt: skip
    """The form to edit a curated answer; with `topic` (a gap topic written for it that came back to the inbox), the
    topic's questions not among its phrasings yet are added to them, for the curator to review and save."""
    cookie = await _signed_in(request, token, ip)
    if cookie is None:
        return _to_login()
    answer = await answers_store.get_answer(sessions, answer_id=require_id(answer_id, what="curated answer"))
    if answer is None:
        raise LorechatError(ErrorCode.not_found, "No such curated answer")
    found = await gaps_store.get_topic(sessions, topic_id=require_id(topic, what="gap topic")) if topic else None
    if topic and found is None:
        raise LorechatError(ErrorCode.not_found, "No such gap topic")
    questions = list(answer.questions)
    if found is not None:
        have = {answers_store.same_phrasing(question) for question in questions}
        questions += [example for example in found.examples if answers_store.same_phrasing(example) not in have]
    values: dict[str, Any] = {
        "answer_id": answer.id, "topic": found, "creator": answer.creator or "",
        "questions": "\n".join(questions), "answer": answer.answer,
        "documents_text": "\n".join(answer.documents), "error": None, "view": answer, "history": answer.history,
        "added": len(questions) - len(answer.questions),
    }  # fmt: skip
    return _answer_page(request=request, cookie=cookie, token=token, catalog=catalog, values=values)


@router.post("/answers/{answer_id}")
async def edit_answer(answer_id: str, request: Request, token: AdminTokenDep, sessions: SessionsDep) -> Response:
    form = await _checked_post(request, token)
    answer_id = require_id(answer_id, what="curated answer")
    topic = form.get("topic") or None
    await answers_store.edit_answer(
        sessions, answer_id=answer_id, questions=_lines(form.get("questions")), answer=form.get("answer", ""),
        documents=_lines(form.get("documents")), topic_id=require_id(topic, what="gap topic") if topic else None,
    )  # fmt: skip
    await _written(request)
    return RedirectResponse("/admin#answers", status_code=303, headers=_HEADERS)


@router.post("/answers/{answer_id}/retire")
async def retire_answer(answer_id: str, request: Request, token: AdminTokenDep, sessions: SessionsDep) -> Response:
    await _checked_post(request, token)
    if not await answers_store.retire_answer(sessions, answer_id=require_id(answer_id, what="curated answer")):
        raise LorechatError(ErrorCode.not_found, "No such active curated answer")
    await _written(request)
    return RedirectResponse("/admin#answers", status_code=303, headers=_HEADERS)


@router.post("/starters")
async def set_starters(request: Request, token: AdminTokenDep, sessions: SessionsDep, catalog: CatalogDep) -> Response:
    form = await _checked_post(request, token)
    creator, site = form.get("creator") or None, form.get("site") or None
    if creator is not None and catalog.creator(creator) is None:
        raise LorechatError(ErrorCode.unknown_creator, f"Unknown creator '{creator}'")
    await answers_store.set_starters(sessions, creator=creator, site=site, questions=_lines(form.get("questions")))
    await _written(request)
    return RedirectResponse("/admin#starters", status_code=303, headers=_HEADERS)
