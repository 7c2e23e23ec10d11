"""`lorechat channels`: a creator's feeds, podcasts, sitemaps, sites and video pages, synced into the index on an
interval (pipeline/channels; docs/curation.md, "Channels").

`add`, `list`, `pause`, `resume` only touch the database. `sync` and `remove` write the index: while `lorechat
serve` holds the embedded index they go through it (`/api/v1/admin/channels/…`, with the shared admin token), as
`lorechat ingest` does. `run` syncs due channels in a loop of its own, for deployments where the serving process
does not (`channels.scheduler: false`).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from backend.errors import ErrorCode, LorechatError
from backend.settings import Settings, get_settings
from pipeline.terminal import dumps, safe

if TYPE_CHECKING:
    from backend.curation.channels_store import ChannelView

T = TypeVar("T")
KINDS = ("feed", "podcast", "sitemap", "site", "video")
# Items that vanish from these are kept by default: a feed or a video channel shows its latest entries only.
WINDOW_KINDS = ("feed", "podcast", "video")
_INTERVAL = re.compile(r"^\s*(\d{1,6})\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_INTERVAL_SECONDS = 60
ChannelIdType = click.IntRange(1, 2**31 - 1)


def parse_interval(text: str) -> int:
    """'30m', '6h', '1d' → seconds (at least a minute, at most a year)."""
    match = _INTERVAL.match(text)
    if not match:
        raise click.BadParameter(f"{text!r}: give a number and a unit, such as 30m, 6h or 1d", param_hint="--every")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if not MIN_INTERVAL_SECONDS <= seconds <= 366 * 86400:
        raise click.BadParameter(f"{text!r}: between 1m and 366d", param_hint="--every")
    return seconds


def format_interval(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _time(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else None


def channel_json(channel: ChannelView) -> dict[str, Any]:
    return {
        "id": channel.id, "creator": channel.creator, "url": channel.url, "kind": channel.kind,
        "every": format_interval(channel.interval_seconds), "max_items": channel.max_items, "depth": channel.depth,
        "keep_missing": channel.keep_missing, "paused": channel.paused, "syncing": channel.syncing,
        "last_sync": _time(channel.last_sync_at), "next_sync": None if channel.paused else _time(channel.next_sync_at),
        "last_status": channel.last_status, "last_error": channel.last_error, "failures": channel.failures,
        "items": channel.items, "documents": channel.documents,
    }  # fmt: skip


def _db(settings: Settings, work: Callable[[Any], Any]) -> Any:
    from pipeline.curator_db import with_sessions

    return with_sessions(settings, work)


@click.group()
def channels() -> None:
    """A creator's feeds, podcasts, sitemaps, sites and video pages, kept in the index by syncing them on an
    interval (`lorechat serve` syncs due channels itself; `channels run` does it elsewhere)."""


@channels.command("add")
@click.argument("creator")
@click.argument("url")
@click.option(
    "--kind",
    type=click.Choice(["auto", *KINDS]),
    default="auto",
    show_default=True,
    help="What the URL is; auto reads it once to tell a feed, a podcast feed, a sitemap, a video page or a site.",
)
@click.option("--every", "every", default="6h", show_default=True, help="Sync interval: 30m, 6h, 1d…")
@click.option(
    "--max-items",
    type=click.IntRange(1, 100_000),
    default=None,
    help="Index at most this many items (the newest, for feeds); a site crawl's page limit (default 200).",
)
@click.option("--depth", type=click.IntRange(0, 10), default=None, help="Site crawls: clicks from the start page.")
@click.option(
    "--keep-missing/--prune-missing",
    default=None,
    help="Keep items that vanish from the source indexed (default for feeds, podcasts and video channels, whose "
    "listings are windows of their latest entries) or remove them once the source was read whole (default for "
    "sitemaps and sites).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the channel as JSON.")
def add(
    creator: str,
    url: str,
    kind: str,
    every: str,
    max_items: int | None,
    depth: int | None,
    keep_missing: bool | None,
    as_json: bool,
) -> None:
    """Add a channel URL for CREATOR (a creator slug). Private and loopback addresses are refused unless
    channels.allow_private_networks is set."""
    from backend.curation import channels_store
    from pipeline.channels.connectors import sniff
    from pipeline.channels.http import Fetcher, FetchError, check_url
    from pipeline.creators import SLUG

    if not SLUG.fullmatch(creator):
        raise click.BadParameter(f"{creator!r} is not a creator slug (a-z, 0-9 and single '-')", param_hint="CREATOR")
    interval = parse_interval(every)
    settings = get_settings()
    try:
        normalized = check_url(url)
        with Fetcher(settings.channels) as http:
            http.check_address(normalized)  # the SSRF guard, before anything is stored (it runs again every sync)
            if kind == "auto":
                kind = sniff(normalized, http)
    except FetchError as exc:
        raise LorechatError(ErrorCode.invalid_input, f"{url}: {exc.reason}") from None
    if depth is not None and kind != "site":
        raise click.UsageError("--depth applies to site crawls only (--kind site)")
    keep = keep_missing if keep_missing is not None else kind in WINDOW_KINDS

    def store(sessions: Any) -> Any:
        return channels_store.add_channel(
            sessions, creator=creator, url=normalized, kind=kind, interval_seconds=interval, max_items=max_items,
            depth=depth, keep_missing=keep,
        )  # fmt: skip

    channel = _db(settings, store)
    _schedule(settings, channel.id)
    if as_json:
        click.echo(dumps(channel_json(channel)))
        return
    click.echo(
        f"Added channel {channel.id}: {kind} {safe(channel.url)} for {safe(creator)}, every {format_interval(interval)}"
        f"{', items that vanish are kept' if keep else ''}."
    )
    click.echo(
        f"Its first sync is due now: `lorechat channels sync {channel.id}`, or the running server's scheduler.",
        err=True,
    )


@channels.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the channels as a JSON array.")
def list_(as_json: bool) -> None:
    """List channels with their last and next sync, item counts and last error."""
    from backend.curation import channels_store

    rows = _db(get_settings(), channels_store.list_channels)
    if as_json:
        click.echo(dumps([channel_json(channel) for channel in rows]))
        return
    if not rows:
        click.echo("No channels: `lorechat channels add CREATOR URL`.", err=True)
    for channel in rows:
        state = "paused" if channel.paused else "syncing" if channel.syncing else channel.last_status or "never synced"
        when = (
            f"last {_time(channel.last_sync_at) or '—'}, next {'—' if channel.paused else _time(channel.next_sync_at)}"
        )
        line = (
            f"{channel.id}  {safe(channel.creator)}  {channel.kind}  {safe(channel.url)}  every "
            f"{format_interval(channel.interval_seconds)}  {state}  {channel.documents}/{channel.items} items  {when}"
        )
        if channel.last_error:
            line += f"  error: {safe(channel.last_error)}"
        click.echo(line)


def _one(settings: Settings, channel_id: int, change: Callable[[Any], Any]) -> Any:
    result = _db(settings, change)
    if result is None:
        raise LorechatError(ErrorCode.not_found, f"no channel with id {channel_id}")
    return result


@channels.command("pause")
@click.argument("channel_id", metavar="ID", type=ChannelIdType)
def pause(channel_id: int) -> None:
    """Stop syncing channel ID (its documents stay indexed)."""
    from backend.curation import channels_store

    settings = get_settings()
    _one(settings, channel_id, lambda s: channels_store.set_paused(s, channel_id, paused=True))
    _schedule(settings, channel_id)
    click.echo(f"Paused channel {channel_id}.", err=True)


@channels.command("resume")
@click.argument("channel_id", metavar="ID", type=ChannelIdType)
def resume(channel_id: int) -> None:
    """Sync channel ID on its interval again (at once if it came due while paused)."""
    from backend.curation import channels_store

    settings = get_settings()
    _one(settings, channel_id, lambda s: channels_store.set_paused(s, channel_id, paused=False))
    _schedule(settings, channel_id)
    click.echo(f"Resumed channel {channel_id}.", err=True)


@channels.command("remove")
@click.argument("channel_id", metavar="ID", type=ChannelIdType)
@click.option("--keep-documents", is_flag=True, help="Leave what the channel indexed in the index.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def remove(channel_id: int, keep_documents: bool, yes: bool) -> None:
    """Remove channel ID and, unless --keep-documents, every document it indexed."""
    if not yes and not keep_documents and sys.stdin.isatty():
        click.confirm(f"Remove channel {channel_id} and every document it indexed?", abort=True, err=True)
    settings = get_settings()
    removed = _with_index(
        settings,
        lambda syncer: syncer.remove(channel_id, keep_documents=keep_documents),
        remote=lambda: _remote(settings, "DELETE", f"/api/v1/admin/channels/{channel_id}?keep_documents="
                               f"{'true' if keep_documents else 'false'}")["documents_removed"],
    )  # fmt: skip
    click.echo(f"Removed channel {channel_id} ({removed} documents removed from the index).", err=True)


@channels.command("sync")
@click.argument("target", metavar="[CREATOR|ID]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report per channel, as a JSON array.")
def sync(target: str | None, as_json: bool) -> None:
    """Sync now: channel ID, CREATOR's active channels, or every active channel. Each sync is an ingest run with
    its report (added, updated, unchanged, pruned, failed with the reason per item). Exits 1 when a channel or
    an item failed."""
    settings = get_settings()
    reports: list[dict[str, Any]] = _with_index(
        settings,
        lambda syncer: [report.as_json() for report in syncer.sync_target(target)],
        remote=lambda: _remote(settings, "POST", "/api/v1/admin/channels/sync", {"target": target})["channels"],
    )
    if as_json:
        click.echo(dumps(reports))
    else:
        for report in reports:
            print_report(report)
        if not reports:
            click.echo("No active channels to sync.", err=True)
    sys.exit(1 if any(r["status"] in ("failed", "partial") for r in reports) else 0)


@channels.command("run")
@click.option("--once", is_flag=True, help="One pass over the due channels, then exit (for cron).")
def run(once: bool) -> None:
    """Sync due channels on their intervals, until interrupted: the scheduler for deployments where `lorechat
    serve` does not run it (channels.scheduler: false, or a Qdrant server shared by several processes)."""
    settings = get_settings()
    every = settings.channels.scheduler_seconds
    while True:
        try:
            reports = _with_index(settings, lambda syncer: [r.as_json() for r in syncer.sync_due()], remote=None)
        except LorechatError as exc:
            if exc.code is not ErrorCode.index_locked:
                raise
            raise LorechatError(
                ErrorCode.index_locked,
                f"{exc.message} The server holding it syncs due channels itself (channels.scheduler); "
                "`channels run` is for when none does.",
            ) from exc
        for report in reports:
            print_report(report)
        if once:
            return
        try:
            time.sleep(every)
        except KeyboardInterrupt:
            return


def print_report(report: dict[str, Any]) -> None:
    failed = report.get("failed") or []
    requests = report.get("requests") or {}
    head = f"channel {report['channel']} ({safe(report['creator'])}, {report['kind']} {safe(report['url'])}): "
    if report["status"] in ("failed", "busy"):
        click.echo(head + f"{report['status']}: {safe(report.get('error') or '')}", err=True)
        return
    click.echo(
        head + f"added {report['added']}  updated {report['updated']}  unchanged {report['unchanged']}  "
        f"pruned {report['pruned']}  failed {len(failed)}  ({report.get('chunks_written', 0)} chunks written; "
        f"{requests.get('total', 0)} requests, {requests.get('not_modified', 0)} answered 304; "
        f"{report.get('seconds', 0):.1f}s)",
        err=True,
    )
    for failure in failed:
        click.echo(f"  ✗ {safe(failure['source'])}: {safe(failure['error'])}", err=True)
    for note in report.get("notes") or []:
        click.echo(f"  · {safe(note)}", err=True)


def _schedule(settings: Settings, channel_id: int) -> None:
    """jobs.engine temporal: the channel's Temporal schedule follows the change (pipeline/jobs/schedules.py)."""
    if settings.jobs.engine == "temporal":
        from pipeline.jobs.schedules import sync_schedules

        sync_schedules(settings, changed=channel_id)


def _remote(settings: Settings, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    from pipeline.remote import admin_call

    return admin_call(
        settings, method, path, body=body, what="channel request", passthrough=(ErrorCode.not_found, ErrorCode.conflict)
    )


def _with_index(settings: Settings, work: Callable[[Any], T], *, remote: Callable[[], T] | None) -> T:
    """`work(ChannelSync)` on this process's index; while `lorechat serve` holds the embedded index, `remote()`
    sends it through the server (with the admin token), as `lorechat ingest` does."""
    from pipeline.channels.sync import ChannelSync
    from pipeline.cli import open_index
    from pipeline.indexer import Indexer

    try:
        with open_index(settings) as retriever:
            return work(ChannelSync(Indexer.from_settings(settings, retriever), settings))
    except LorechatError as exc:
        if exc.code is not ErrorCode.index_locked or remote is None:
            raise
        if settings.auth.admin_token is None:
            raise LorechatError(
                ErrorCode.index_locked,
                f"{exc.message} Stop `lorechat serve`, or set LORECHAT_AUTH__ADMIN_TOKEN for both so this goes "
                "through the server.",
            ) from exc
        click.echo("The index is held by the running server: sending this through it…", err=True)
        return remote()
