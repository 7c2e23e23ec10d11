"""Embedding sites and their daily usage; the budget is counted by one atomic SQL statement per request, so
several API processes on one database never let a site past its limit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from backend.curation.origins import OriginError, normalize_origin
from backend.errors import ErrorCode, LorechatError
from backend.storage.models import Site, SiteUsage, utcnow
from backend.storage.repository import Sessions, db_errors
from backend.storage.upsert import upsert


@dataclass(frozen=True, slots=True)
class SiteView:
    name: str
    origins: list[str]
    creators: list[str]
    daily_limit: int | None
    created_at: datetime
    requests_today: int = 0
    refused_today: int = 0
    requests_total: int = 0
    has_key: bool = False  # a key for agents exists (`lorechat sites key`); its hash stays in storage


def utc_day(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d")


def _view(site: Site, today: SiteUsage | None = None, total: int = 0) -> SiteView:
    return SiteView(
        name=site.name, origins=list(site.origins), creators=list(site.creators), daily_limit=site.daily_limit,
        created_at=site.created_at, requests_today=today.requests if today else 0,
        refused_today=today.refused if today else 0, requests_total=total, has_key=site.key_hash is not None,
    )  # fmt: skip


async def add_site(
    sessions: Sessions, *, name: str, origins: list[str], creators: list[str], daily_limit: int | None
) -> SiteView:
    """Register a site; invalid_input naming a malformed origin (stored normalised, C2); conflict when the name is
    taken."""
    try:
        normalized = sorted({normalize_origin(origin) for origin in origins})
    except OriginError as exc:
        raise LorechatError(ErrorCode.invalid_input, str(exc)) from exc
    site = Site(name=name, origins=normalized, creators=creators, daily_limit=daily_limit, created_at=utcnow())
    try:
        async with db_errors(), sessions() as session, session.begin():
            session.add(site)
    except IntegrityError as exc:
        raise LorechatError(ErrorCode.conflict, f"A site named '{name}' exists already") from exc
    return _view(site)


async def remove_site(sessions: Sessions, *, name: str) -> bool:
    async with db_errors(), sessions() as session, session.begin():
        await session.execute(delete(SiteUsage).where(SiteUsage.site == name))
        result = await session.execute(delete(Site).where(Site.name == name))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def get_site(sessions: Sessions, *, name: str) -> SiteView | None:
    async with db_errors(), sessions() as session:
        site = await session.get(Site, name)
        return _view(site) if site else None


async def set_site_key(sessions: Sessions, *, name: str, key_hash: str) -> bool:
    """Store the hash of `name`'s new key, replacing any earlier one; False when there is no such site."""
    async with db_errors(), sessions() as session, session.begin():
        site = await session.get(Site, name)
        if site is None:
            return False
        site.key_hash = key_hash
    return True


async def get_site_with_key(sessions: Sessions, *, name: str) -> tuple[SiteView, str | None] | None:
    """The site and its key's stored hash (None: no key), for the key check alone (curation/sites.py)."""
    async with db_errors(), sessions() as session:
        site = await session.get(Site, name)
        return (_view(site), site.key_hash) if site else None


async def list_sites(sessions: Sessions) -> list[SiteView]:
    """Every site with today's and all-time request counts."""
    today = utc_day()
    async with db_errors(), sessions() as session:
        sites = list(await session.scalars(select(Site).order_by(Site.name)))
        usage = {u.site: u for u in await session.scalars(select(SiteUsage).where(SiteUsage.day == today))}
        summed = await session.execute(select(SiteUsage.site, func.sum(SiteUsage.requests)).group_by(SiteUsage.site))
        totals: dict[str, int] = {name: int(total or 0) for name, total in summed.all()}
    return [_view(site, usage.get(site.name), totals.get(site.name, 0)) for site in sites]


async def count_request(sessions: Sessions, *, name: str, daily_limit: int | None, day: str) -> bool:
    """Count one chat request for `name` today; False (counted as refused) when its budget is spent.

    The increment and the budget check are one statement (an upsert whose update only applies below the
    limit), so concurrent requests in any number of processes cannot overshoot it (R1).
    """
    table = SiteUsage.__table__
    where = table.c.requests < daily_limit if daily_limit is not None else None
    async with db_errors(), sessions() as session, session.begin():
        if daily_limit is not None and daily_limit <= 0:
            counted = None
        else:
            statement = upsert(
                session,
                SiteUsage,
                values={"site": name, "day": day, "requests": 1, "refused": 0},
                keys=["site", "day"],
                update={"requests": table.c.requests + 1},
                where=where,
            ).returning(table.c.requests)
            counted = (await session.execute(statement)).first()
        if counted is not None:
            return True
        await session.execute(
            upsert(
                session,
                SiteUsage,
                values={"site": name, "day": day, "requests": 0, "refused": 1},
                keys=["site", "day"],
                update={"refused": table.c.refused + 1},
            )
        )
    return False
