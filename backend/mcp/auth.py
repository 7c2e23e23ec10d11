"""Who calls the MCP server: a bearer JWT (the API's own rules), a site key, or nobody when mcp.allow_anonymous.

Each HTTP request to /mcp is authenticated before the MCP SDK reads it, and every credential goes through the
credential guard first (backend/credential_guard.py, S6): an address past `limits.auth_failures` failed checks
gets 429 whatever it sends. A JWT makes the caller a user (their conversations, the per-user limit); a site key
(`lorechat sites key NAME`, backend/curation/sites.py) makes it that site: only its creators, within its daily
budget. Refusals are plain HTTP errors in the API's one shape (401 with WWW-Authenticate: Bearer, 429, 503).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from starlette.requests import Request

from backend.api.deps import client_ip_of, credentials_of, sessions_of, settings_of
from backend.auth import decode_bearer
from backend.curation.sites import is_site_key, site_of_key
from backend.curation.sites_store import SiteView
from backend.errors import ErrorCode, LorechatError

CALLER = "lorechat.mcp.caller"  # where the caller rides in the ASGI scope, from the route to the tool handlers


@dataclass(frozen=True, slots=True)
class Caller:
    ip: str
    owner_id: str | None = None  # a JWT's subject: whose conversations, the per-user limit
    site: SiteView | None = None  # a site key's site: its creators and daily budget apply

    @property
    def kind(self) -> str:
        return "user" if self.owner_id else "site" if self.site else "anonymous"

    def may_see(self, creator: str) -> bool:
        """Whether this caller may read or ask `creator` (a site with no list may ask every creator)."""
        return self.site is None or not self.site.creators or creator in self.site.creators

    def default_creator(self) -> str | None:
        """The creator meant when none is named: a site's only creator."""
        if self.site is not None and len(self.site.creators) == 1:
            return self.site.creators[0]
        return None


async def authenticate(request: Request) -> Caller:
    """The caller of this request, or 401 / 429 (the guard) / 503 (storage) as the API would answer."""
    settings = settings_of(request)
    ip = client_ip_of(request)
    header = request.headers.get("authorization")
    if header is None or not header.strip():
        if settings.mcp.allow_anonymous:
            return Caller(ip=ip)
        raise LorechatError(ErrorCode.unauthorized, "Send Authorization: Bearer with a JWT or a site key")
    scheme, _, token = header.strip().partition(" ")
    guard = credentials_of(request)
    if scheme.lower() == "bearer" and is_site_key(token.strip()):
        site = await guard.check_async(ip, partial(site_of_key, sessions_of(request), token.strip()))
        return Caller(ip=ip, site=site)
    principal = await guard.check(ip, lambda: decode_bearer(header, settings.auth))
    if principal is None:  # pragma: no cover - a non-blank header always decodes to a principal or raises
        raise LorechatError(ErrorCode.unauthorized, "Invalid or expired token")
    return Caller(ip=ip, owner_id=principal.user_id)
