"""The site guard: a chat request naming an embedding site is accepted only from that site's origins, for its
creators and within its daily budget, and counted per site.

What this protects against: other web pages using a site's name (and budget) from a browser, since browsers
always send the true Origin. What it does not: a script outside a browser can send any Origin header, so the
origin rule is not authentication; the daily budget and the per-IP limits are the real guard (docs/curation.md).

A site may also hold a key (`lorechat sites key NAME`), for agents calling the MCP server as that site: the key is
authentication (checked through the credential guard, backend/mcp/auth.py), and the same creators and budget apply.
Only its SHA-256 is stored; the key is shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from datetime import UTC, datetime, timedelta

from backend.curation import sites_store
from backend.curation.origins import origin_or_none
from backend.errors import ErrorCode, LorechatError
from backend.ids import is_slug
from backend.settings import Settings
from backend.storage.repository import Sessions

# "lck_<site name>_<secret>": the name says which site's hash to compare with; site names hold no "_".
SITE_KEY_PREFIX = "lck_"
_MAX_KEY_CHARS = 256


def seconds_until_utc_midnight(now: datetime | None = None) -> int:
    now = (now or datetime.now(UTC)).astimezone(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((midnight - now).total_seconds()))


def _forbidden(message: str) -> LorechatError:
    return LorechatError(ErrorCode.forbidden, message)


async def admit_site(
    sessions: Sessions, settings: Settings, *, site: str | None, origin: str | None, creator: str | None
) -> None:
    """Raise forbidden (403) or site_budget_exhausted (429, Retry-After until UTC midnight); else count it."""
    if site is None:
        if settings.sites.require_site:
            raise _forbidden("This service only answers the sites registered with it (name one with `site`)")
        return
    registered = await sites_store.get_site(sessions, name=site)
    # One message for "unknown site" and "not from its origin": a stranger learns nothing about site names.
    # Both sides through the one parser: a malformed Origin header (or a stored origin) matches nothing.
    caller = origin_or_none(origin)
    if registered is None or caller is None or caller not in {origin_or_none(o) for o in registered.origins}:
        raise _forbidden("This site may not use the chat from this origin")
    await spend_site_budget(sessions, registered, creator=creator)


async def spend_site_budget(sessions: Sessions, site: sites_store.SiteView, *, creator: str | None) -> None:
    """The site's own rules for one request: forbidden (403) for a creator it may not ask, else one request
    counted against its daily budget, refused past it (429, Retry-After until UTC midnight)."""
    if site.creators and creator not in site.creators:
        raise _forbidden("This site may not ask this creator")
    allowed = await sites_store.count_request(
        sessions, name=site.name, daily_limit=site.daily_limit, day=sites_store.utc_day()
    )
    if not allowed:
        raise LorechatError(
            ErrorCode.site_budget_exhausted,
            "This site has used its questions for today",
            retry_after=seconds_until_utc_midnight(),
        )


def new_site_key(name: str) -> tuple[str, str]:
    """A new key for site `name` and the hash to store: the key is shown once and kept nowhere."""
    key = f"{SITE_KEY_PREFIX}{name}_{secrets.token_urlsafe(32)}"
    return key, site_key_hash(key)


def site_key_hash(key: str) -> str:
    # 256 random bits: a fast hash is enough (nothing to brute-force), and the comparison is constant-time.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def is_site_key(token: str) -> bool:
    return token.startswith(SITE_KEY_PREFIX)


async def site_of_key(sessions: Sessions, key: str) -> sites_store.SiteView:
    """The site `key` belongs to; unauthorized (401, one message) for a malformed key, an unknown site, a site
    without a key or a wrong one. Call it through the credential guard: a guess is a failed check."""
    name, _, secret = key.removeprefix(SITE_KEY_PREFIX).partition("_")
    found = None
    if is_site_key(key) and len(key) <= _MAX_KEY_CHARS and secret and is_slug(name):
        found = await sites_store.get_site_with_key(sessions, name=name)
    stored = found[1] if found is not None else None
    if found is None or stored is None or not hmac.compare_digest(stored, site_key_hash(key)):
        raise LorechatError(ErrorCode.unauthorized, "Invalid or expired token")
    return found[0]
