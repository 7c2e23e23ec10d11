"""The site guard: a chat request naming an embedding site is accepted only from that site's origins, for its
creators and within its daily budget, and counted per site.

What this protects against: other web pages using a site's name (and budget) from a browser, since browsers
always send the true Origin. What it does not: a script outside a browser can send any Origin header, so the
origin rule is not authentication; the daily budget and the per-IP limits are the real guard (docs/curation.md).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from backend.curation import sites_store
from backend.curation.origins import origin_or_none
from backend.errors import ErrorCode, LorechatError
from backend.settings import Settings
from backend.storage.repository import Sessions


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
    if registered.creators and creator not in registered.creators:
        raise _forbidden("This site may not ask this creator")
    allowed = await sites_store.count_request(
        sessions, name=site, daily_limit=registered.daily_limit, day=sites_store.utc_day()
    )
    if not allowed:
        raise LorechatError(
            ErrorCode.site_budget_exhausted,
            "This site has used its questions for today",
            retry_after=seconds_until_utc_midnight(),
        )
