"""Creator channels in SQL: the channels (`lorechat channels`), their items as last synced, and the claim that keeps
two syncs of one channel from ever running at once, on any process sharing the database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from backend.errors import ErrorCode, LorechatError
from backend.storage.cleaning import clean_json, clean_text
from backend.storage.models import CHANNEL_KINDS, Channel, ChannelItem, utcnow
from backend.storage.repository import Sessions, db_errors

# Rows per IN (...) list: well under every driver's parameter limit.
_BATCH = 500


@dataclass(frozen=True, slots=True)
class ChannelView:
    id: int
    creator: str
    url: str
    kind: str
    interval_seconds: int
    max_items: int | None
    depth: int | None
    keep_missing: bool
    paused: bool
    created_at: datetime
    etag: str | None = None
    last_modified: str | None = None
    last_sync_at: datetime | None = None
    next_sync_at: datetime | None = None
    last_status: str | None = None
    last_error: str | None = None
    failures: int = 0
    items: int = 0
    documents: int = 0
    last_report: dict[str, Any] | None = None
    # A sync holds it now (its lease has not lapsed).
    syncing: bool = False


@dataclass(frozen=True, slots=True)
class ItemState:
    """One item as last synced."""

    key: str
    key_hash: str
    document_id: str
    item: dict[str, Any]
    token: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None
    error: str | None = None


@dataclass(slots=True)
class SyncOutcome:
    """What one sync leaves behind: item rows written or removed, and the channel's new status."""

    status: str  # ok, partial, failed
    error: str | None
    next_sync_at: datetime
    failures: int
    report: dict[str, Any] | None
    etag: str | None = None
    last_modified: str | None = None
    keep_validators: bool = False  # the listing failed: keep the validators it had
    upserts: list[ItemState] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # key hashes


def _view(row: Channel, now: datetime | None = None) -> ChannelView:
    now = now or utcnow()
    return ChannelView(
        id=row.id, creator=row.creator, url=row.url, kind=row.kind, interval_seconds=row.interval_seconds,
        max_items=row.max_items, depth=row.depth, keep_missing=row.keep_missing, paused=row.paused,
        created_at=row.created_at, etag=row.etag, last_modified=row.last_modified, last_sync_at=row.last_sync_at,
        next_sync_at=row.next_sync_at, last_status=row.last_status, last_error=row.last_error,
        failures=row.failures, items=row.items, documents=row.documents, last_report=row.last_report,
        syncing=row.lease_expires_at is not None and row.lease_expires_at > now,
    )  # fmt: skip


async def add_channel(
    sessions: Sessions,
    *,
    creator: str,
    url: str,
    kind: str,
    interval_seconds: int,
    max_items: int | None,
    depth: int | None,
    keep_missing: bool,
) -> ChannelView:
    """A new channel, due at once; conflict when the creator has this URL already."""
    if kind not in CHANNEL_KINDS:
        raise LorechatError(ErrorCode.invalid_input, f"unknown channel kind {kind!r}")
    now = utcnow()
    row = Channel(
        creator=creator, url=clean_text(url), kind=kind, interval_seconds=interval_seconds, max_items=max_items,
        depth=depth, keep_missing=keep_missing, paused=False, created_at=now, next_sync_at=now, failures=0, items=0,
        documents=0,
    )  # fmt: skip
    try:
        async with db_errors(), sessions() as session, session.begin():
            session.add(row)
            await session.flush()
    except IntegrityError as exc:
        raise LorechatError(ErrorCode.conflict, f"'{creator}' has a channel for {url} already") from exc
    return _view(row, now)


async def get_channel(sessions: Sessions, channel_id: int) -> ChannelView | None:
    async with db_errors(), sessions() as session:
        row = await session.get(Channel, channel_id)
        return _view(row) if row else None


async def list_channels(sessions: Sessions, *, creator: str | None = None) -> list[ChannelView]:
    query = select(Channel).order_by(Channel.creator, Channel.id)
    if creator is not None:
        query = query.where(Channel.creator == creator)
    now = utcnow()
    async with db_errors(), sessions() as session:
        return [_view(row, now) for row in await session.scalars(query)]


async def set_paused(sessions: Sessions, channel_id: int, *, paused: bool) -> ChannelView | None:
    """Pause or resume; a resumed channel is due at once if it was due while paused."""
    async with db_errors(), sessions() as session, session.begin():
        row = await session.get(Channel, channel_id)
        if row is None:
            return None
        row.paused = paused
        return _view(row)


async def remove_channel(sessions: Sessions, channel_id: int) -> list[str] | None:
    """Delete the channel and its items; returns the document ids its items had become (None: no such channel)."""
    async with db_errors(), sessions() as session, session.begin():
        row = await session.get(Channel, channel_id)
        if row is None:
            return None
        documents = list(
            await session.scalars(select(ChannelItem.document_id).where(ChannelItem.channel_id == channel_id))
        )
        await session.execute(delete(ChannelItem).where(ChannelItem.channel_id == channel_id))
        await session.delete(row)
    return documents


async def due_channels(sessions: Sessions, *, now: datetime | None = None) -> list[int]:
    """Active channels whose next sync is due and that no sync holds, oldest due first."""
    now = now or utcnow()
    query = (
        select(Channel.id)
        .where(
            Channel.paused.is_(False),
            Channel.next_sync_at <= now,
            or_(Channel.lease_expires_at.is_(None), Channel.lease_expires_at <= now),
        )
        .order_by(Channel.next_sync_at, Channel.id)
    )
    async with db_errors(), sessions() as session:
        return list(await session.scalars(query))


async def claim(sessions: Sessions, channel_id: int, *, owner: str, lease_seconds: float) -> bool:
    """Take the channel for one sync: one atomic UPDATE that succeeds only while no unexpired lease holds it."""
    now = utcnow()
    async with db_errors(), sessions() as session, session.begin():
        result = await session.execute(
            update(Channel)
            .where(
                Channel.id == channel_id,
                or_(Channel.lease_expires_at.is_(None), Channel.lease_expires_at <= now),
            )
            .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_seconds))
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def renew(sessions: Sessions, channel_id: int, *, owner: str, lease_seconds: float) -> bool:
    """Extend this sync's lease; False when it was lost (it lapsed and another process took the channel)."""
    async with db_errors(), sessions() as session, session.begin():
        result = await session.execute(
            update(Channel)
            .where(Channel.id == channel_id, Channel.lease_owner == owner)
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release(sessions: Sessions, channel_id: int, *, owner: str) -> None:
    async with db_errors(), sessions() as session, session.begin():
        await session.execute(
            update(Channel)
            .where(Channel.id == channel_id, Channel.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )


async def item_states(sessions: Sessions, channel_id: int) -> dict[str, ItemState]:
    """The channel's items as last synced, by key hash."""
    async with db_errors(), sessions() as session:
        rows = await session.scalars(select(ChannelItem).where(ChannelItem.channel_id == channel_id))
        return {
            row.key_hash: ItemState(
                key=row.key,
                key_hash=row.key_hash,
                document_id=row.document_id,
                item=dict(row.item),
                token=row.token,
                etag=row.etag,
                last_modified=row.last_modified,
                content_hash=row.content_hash,
                error=row.error,
            )
            for row in rows
        }


async def finish_sync(sessions: Sessions, channel_id: int, *, owner: str, outcome: SyncOutcome) -> bool:
    """Write a sync's item rows and the channel's status in one transaction, releasing its lease. False (nothing
    written) when the lease was lost to another process meanwhile."""
    now = utcnow()
    async with db_errors(), sessions() as session, session.begin():
        row = await session.get(Channel, channel_id)
        if row is None or row.lease_owner != owner:
            return False
        changed = {state.key_hash for state in outcome.upserts} | set(outcome.removed)
        for batch in _batches(changed):
            await session.execute(
                delete(ChannelItem).where(ChannelItem.channel_id == channel_id, ChannelItem.key_hash.in_(batch))
            )
        session.add_all(
            ChannelItem(
                channel_id=channel_id,
                key_hash=state.key_hash,
                key=clean_text(state.key),
                document_id=clean_text(state.document_id),
                item=clean_json(state.item),
                token=state.token,
                etag=state.etag,
                last_modified=state.last_modified,
                content_hash=state.content_hash,
                error=clean_text(state.error) if state.error else None,
                updated_at=now,
            )
            for state in outcome.upserts
        )
        await session.flush()
        # Counted in SQL (count of a column skips NULLs: items that made no document).
        total, documents = (
            await session.execute(
                select(func.count(), func.count(ChannelItem.content_hash)).where(ChannelItem.channel_id == channel_id)
            )
        ).one()
        row.items, row.documents = int(total), int(documents)
        row.last_sync_at = now
        row.next_sync_at = outcome.next_sync_at
        row.last_status = outcome.status
        row.last_error = clean_text(outcome.error) if outcome.error else None
        row.failures = outcome.failures
        row.last_report = clean_json(outcome.report)
        if not outcome.keep_validators:
            row.etag, row.last_modified = outcome.etag, outcome.last_modified
        row.lease_owner = None
        row.lease_expires_at = None
    return True


def _batches(values: Iterable[str]) -> list[list[str]]:
    ordered = sorted(values)
    return [ordered[i : i + _BATCH] for i in range(0, len(ordered), _BATCH)]
