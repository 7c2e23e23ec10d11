"""One sync of a channel: claim it, list its items, fetch what changed, ingest, record; and the due channels' loop.

1. **Claim** the channel in SQL (an atomic UPDATE on a lapsed lease, renewed while the sync runs): never two syncs
   of one channel at once, on any process sharing the database.
2. **List** through the channel's connector, sending the listing's validators (a 304 keeps the last listing).
3. **Decide** per item: an unchanged change token and nothing to revalidate skips it (no request, no embedding);
   an unchanged token with `revalidate` asks the item again with its ETag / Last-Modified (304: skipped); a new or
   changed token fetches it whole.
4. **Ingest** the fetched documents through ingest's own hash gate (`Indexer.ingest_documents`): a document whose
   text did not change is not embedded again; a changed one has its chunks replaced. Document ids are
   `<creator>/.channel-<id>/<hash of the item key>`, stable and scoped to the creator and the channel.
5. **Prune** only when the listing was read whole and successfully (not partial, not empty, not a 304, no stop),
   and the channel is not a window (`keep_missing`, the default for feeds, podcasts and video channels): an error,
   a timeout, an empty or truncated listing prunes nothing. Items that failed keep their last document.
6. **Record** the items' state and the channel's status in one transaction (releasing the claim), and the run in
   `ingest_runs` (the dashboard lists both). A failed sync backs the channel off: retried after 15 minutes, then
   twice as late after each further failure in a row, at most `channels.max_backoff_hours`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from backend import tracing
from backend.curation import channels_store, runs_store
from backend.curation.channels_store import ChannelView, ItemState, SyncOutcome
from backend.errors import ErrorCode, LorechatError
from backend.settings import Settings
from backend.stages import Creator, Document
from backend.storage import catalog_store
from backend.storage.models import utcnow
from backend.storage.repository import Sessions
from pipeline.channels.connectors import CONNECTORS
from pipeline.channels.http import Fetcher, FetchError, Validators
from pipeline.channels.types import Fetched, Item, Known, Source
from pipeline.indexer import Indexer
from pipeline.ingest import CHANNEL_DOCUMENTS, Failure, IngestReport
from pipeline.sources.common import ParseError

log = logging.getLogger(__name__)

# A channel whose listing failed is tried again this soon the first time, then twice as late each time.
RETRY_SECONDS = 15 * 60


def document_prefix(creator: str, channel_id: int) -> str:
    return f"{creator}{CHANNEL_DOCUMENTS}{channel_id}/"


def document_id(creator: str, channel_id: int, item: Item) -> str:
    return f"{document_prefix(creator, channel_id)}{item.key_hash[:32]}"


@dataclass(slots=True)
class ChannelReport:
    """One sync's outcome: the ingest report plus what only a channel has (notes, requests, status)."""

    channel_id: int
    creator: str
    url: str
    kind: str
    status: str  # ok, partial, failed, busy (another sync holds it)
    error: str | None = None
    report: IngestReport = field(default_factory=IngestReport)
    notes: list[str] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    pruned_allowed: bool = False

    @property
    def wrote_anything(self) -> bool:
        return self.report.wrote_anything

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelReport:
        """The report as `as_json` wrote it (a sync that ran as a job on the workers answers with this shape)."""
        return cls(
            channel_id=int(data["channel"]), creator=data["creator"], url=data["url"], kind=data["kind"],
            status=data["status"], error=data.get("error"), report=IngestReport.from_json(data),
            notes=list(data.get("notes") or ()), requests=dict(data.get("requests") or {}),
        )  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel_id,
            "creator": self.creator,
            "url": self.url,
            "kind": self.kind,
            "status": self.status,
            "error": self.error,
            **self.report.as_json(),
            "chunks_written": self.report.chunks_written,
            "notes": self.notes,
            "requests": self.requests,
            "seconds": round(self.report.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class _Claimed:
    channel: ChannelView
    states: dict[str, ItemState]
    creator: Creator


class ChannelSync:
    """Syncs channels into one indexer's index and catalog; its database is the catalog's (the CLI's own engine,
    or the service's sessions when the server runs it).

    With `jobs.engine: temporal` a sync asked here (the CLI, the admin routes) runs as the channel's job on the
    workers (`channel:<id>`; a second start joins the running one) and the due channels' pass keeps each channel's
    Temporal schedule in step instead of syncing (pipeline/jobs/schedules.py); `in_job` is the worker's own sync,
    which runs here."""

    def __init__(self, indexer: Indexer, settings: Settings, *, owner: str | None = None, in_job: bool = False) -> None:
        if indexer.catalog is None:
            raise ValueError("channel syncs need an indexer with a catalog (Indexer.from_settings)")
        self.indexer = indexer
        self.settings = settings
        self.database = indexer.catalog.database
        self.owner = owner or f"sync-{uuid.uuid4().hex[:16]}"
        self.as_jobs = settings.jobs.engine == "temporal" and not in_job

    @classmethod
    def for_service(cls, settings: Settings, retriever: Any, *, sessions: Sessions) -> ChannelSync:
        """The server's: its retriever and database sessions (passed into the app by the composition root)."""
        return cls(Indexer.from_settings(settings, retriever, sessions=sessions), settings)

    # ---- what the CLI, the admin routes and the scheduler call ------------------------------------------------

    def sync_target(self, target: str | None, *, stop: threading.Event | None = None) -> list[ChannelReport]:
        """Sync now: one channel by id (paused or not), a creator's active channels, or every active channel."""
        channels = self.database.run(lambda s: channels_store.list_channels(s))
        if target is None:
            chosen = [c for c in channels if not c.paused]
        elif target.isdigit() and any(c.id == int(target) for c in channels):
            chosen = [c for c in channels if c.id == int(target)]
        else:
            chosen = [c for c in channels if c.creator == target and not c.paused]
            if not chosen:
                raise LorechatError(ErrorCode.not_found, f"no channel with id {target!r} and no active channel for it")
        return [self.sync(channel.id, stop=stop) for channel in chosen if not (stop and stop.is_set())]

    def sync_due(self, *, stop: threading.Event | None = None) -> list[ChannelReport]:
        """Every channel that is due now (the scheduler's pass); one failing channel never stops the others. With
        `jobs.engine: temporal` Temporal's schedules sync the channels: this pass only keeps them in step."""
        if self.as_jobs:
            from pipeline.jobs.schedules import sync_schedules

            sync_schedules(self.settings)
            return []
        reports = []
        for channel_id in self.database.run(lambda s: channels_store.due_channels(s)):
            if stop is not None and stop.is_set():
                break
            try:
                reports.append(self.sync(channel_id, stop=stop))
            except LorechatError as exc:  # the database or the index went away mid-pass: the next pass retries
                log.warning("channel %s: sync not finished: %s", channel_id, exc.message)
        return reports

    def remove(self, channel_id: int, *, keep_documents: bool = False) -> int:
        """Delete a channel and, unless kept, its documents from the index and the catalog; returns how many."""
        channel = self.database.run(lambda s: channels_store.get_channel(s, channel_id))
        if channel is None:
            raise LorechatError(ErrorCode.not_found, f"no channel with id {channel_id}")
        if not self.database.run(
            lambda s: channels_store.claim(s, channel_id, owner=self.owner, lease_seconds=self._lease)
        ):
            raise LorechatError(ErrorCode.conflict, f"channel {channel_id} is syncing; remove it when that ends")
        self.database.run(lambda s: channels_store.remove_channel(s, channel_id))
        if self.as_jobs:
            from pipeline.jobs.schedules import sync_schedules

            sync_schedules(self.settings, removed=channel_id)
        if keep_documents:
            return 0
        prefix = document_prefix(channel.creator, channel.id)
        owned = [d for d in self.indexer.store.documents(channel.creator) if d.startswith(prefix)]
        if owned:
            self.indexer.store.delete_documents(owned)

        def unlist(catalog: Any) -> None:
            entry = catalog.creators.get(channel.creator)
            for document in list(entry.documents) if entry else []:
                if document.startswith(prefix):
                    entry.documents.pop(document)

        assert self.indexer.catalog is not None
        self.indexer.catalog.edit(unlist)
        return len(owned)

    # ---- one sync -------------------------------------------------------------------------------------------

    @property
    def _lease(self) -> float:
        return self.settings.channels.lease_seconds

    def sync(self, channel_id: int, *, stop: threading.Event | None = None) -> ChannelReport:
        if self.as_jobs:
            return self._sync_as_job(channel_id, stop)
        started = utcnow()
        claimed = self.database.run(lambda s: self._claim(s, channel_id))
        if claimed is None:
            raise LorechatError(ErrorCode.not_found, f"no channel with id {channel_id}")
        if isinstance(claimed, ChannelView):
            return ChannelReport(
                channel_id, claimed.creator, claimed.url, claimed.kind, "busy",
                error="another sync of this channel is running; it was left to finish",
            )  # fmt: skip
        # The claim is renewed while the sync runs; if it is lost anyway (this process stalled past the lease and
        # another took the channel), the sync stops and writes nothing.
        heartbeat = _Heartbeat(
            lambda: self.database.run(
                lambda s: channels_store.renew(s, channel_id, owner=self.owner, lease_seconds=self._lease)
            ),
            every=self._lease / 3,
            stop=stop,
        )
        try:
            with heartbeat:
                # One trace per sync when tracing is on (backend/tracing.py): the listing, the fetches, the ingest.
                attributes = {"lorechat.channel.kind": claimed.channel.kind, tracing.CREATOR: claimed.channel.creator}
                with tracing.span("channel sync", attributes):
                    return self._run(claimed, started, heartbeat.stop, heartbeat)
        except BaseException:
            self.database.run(lambda s: channels_store.release(s, channel_id, owner=self.owner))
            raise

    def _sync_as_job(self, channel_id: int, stop: threading.Event | None) -> ChannelReport:
        """The channel's job on the workers (started, or joined if one runs), waited for; `stop` (a shutdown) stops
        the waiting, not the job."""
        from pipeline.jobs.client import Jobs

        jobs = Jobs(self.settings)
        started = jobs.start_channel(channel_id, origin="sync")
        result = jobs.wait(started.id, started.run, stop=stop)
        if result is None:
            channel = self.database.run(lambda s: channels_store.get_channel(s, channel_id))
            return ChannelReport(
                channel_id, channel.creator if channel else "", channel.url if channel else "",
                channel.kind if channel else "", "partial", error=f"still running as job {started.id}",
            )  # fmt: skip
        return ChannelReport.from_json(result["report"])

    async def _claim(self, sessions: Sessions, channel_id: int) -> _Claimed | ChannelView | None:
        channel = await channels_store.get_channel(sessions, channel_id)
        if channel is None:
            return None
        # A job's retry (its worker died) holds the claim its first attempt took: the same owner renews it at once.
        if not await channels_store.claim(
            sessions, channel_id, owner=self.owner, lease_seconds=self._lease
        ) and not await channels_store.renew(sessions, channel_id, owner=self.owner, lease_seconds=self._lease):
            return channel
        states = await channels_store.item_states(sessions, channel_id)
        known = (await catalog_store.load_catalog(sessions))[1].creator(channel.creator)
        creator = known or Creator(slug=channel.creator, name=channel.creator.replace("-", " ").title())
        return _Claimed(channel=channel, states=states, creator=creator)

    def _run(self, claimed: _Claimed, started: datetime, stop: threading.Event, heartbeat: _Heartbeat) -> ChannelReport:
        channel, states, creator = claimed.channel, claimed.states, claimed.creator
        result = ChannelReport(channel.id, channel.creator, channel.url, channel.kind, "ok")
        clock = time.perf_counter()
        indexed = {s.key: s for s in states.values() if s.content_hash is not None}
        source = Source(
            channel_id=channel.id, creator=channel.creator, url=channel.url, kind=channel.kind,
            max_items=channel.max_items,
            depth=channel.depth if channel.depth is not None else self.settings.channels.crawl_depth,
            # Without anything indexed, a 304 would leave nothing to go on: ask for the listing whole.
            validators=Validators(channel.etag, channel.last_modified) if indexed else Validators(),
            known={k: Known(Item.from_json(s.item), Validators(s.etag, s.last_modified)) for k, s in indexed.items()},
        )  # fmt: skip
        connector = CONNECTORS[channel.kind]
        with Fetcher(self.settings.channels, stop=stop) as http:
            try:
                listing = connector.list_items(source, http)
            except FetchError as exc:
                result.status, result.error = "failed", exc.reason
                result.requests = http.counters.as_json()
                stopped = stop is not None and stop.is_set()  # a shutdown, not the source's fault: due again at once
                failed = SyncOutcome(
                    status="failed", error=exc.reason, next_sync_at=utcnow() if stopped else self._backoff(channel),
                    failures=channel.failures + (0 if stopped else 1), report=None, keep_validators=True,
                )  # fmt: skip
                return self._finish(claimed, result, started, clock, failed)
            result.notes.extend(listing.notes)
            if listing.not_modified:  # the last listing stands: its items (failed ones too, to try them again)
                items = [Item.from_json(state.item) for state in states.values()]
            else:
                items = list({item.key: item for item in listing.items}.values())  # a key listed twice is one item
            limit = channel.max_items if channel.max_items and not listing.not_modified else None
            selected = items[:limit] if limit else items
            plan = self._plan(channel, states, selected)
            fetched = self._fetch_all(connector, http, plan.work, stop)
            result.requests = http.counters.as_json()
        if stop is not None and stop.is_set() and heartbeat.lost:
            result.status, result.error = "failed", "lost its claim on the channel (lease lapsed); nothing written"
            return result

        documents: list[Document] = []
        failures = [Failure(where, reason) for where, reason in listing.failures]
        upserts: list[ItemState] = []
        keep = set(plan.kept)
        for (item, validators, previous), outcome in zip(plan.work, fetched, strict=True):
            doc_id = document_id(channel.creator, channel.id, item)
            was_indexed = previous is not None and previous.content_hash is not None
            if outcome is None:  # never reached: the sync was stopped
                if was_indexed:
                    keep.add(doc_id)
                continue
            if isinstance(outcome, Fetched) and outcome.content is not None and not outcome.content.blocks:
                outcome = FetchError("no text found")
            if not isinstance(outcome, Fetched):
                failures.append(Failure(item.url, outcome.reason))
                if was_indexed:
                    keep.add(doc_id)
                upserts.append(_state(item, doc_id, previous, error=outcome.reason))
                continue
            if outcome.not_modified:
                keep.add(doc_id)
                plan.unchanged += 1
                upserts.append(_state(item, doc_id, previous, validators=outcome.validators or validators, ok=True))
                continue
            content = outcome.content
            assert content is not None
            document = Document(
                creator=channel.creator, document_id=doc_id, source=item.url,
                title=content.title or item.title or item.url, blocks=content.blocks, url=content.url or item.url,
                published=content.published or item.published, kind=content.kind, metadata={"channel": channel.id},
            )  # fmt: skip
            documents.append(document)
            if content.note:
                result.notes.append(f"{item.url}: {content.note}")
            merged = dataclasses.replace(item, data={**item.data, **outcome.data})
            upserts.append(
                _state(merged, doc_id, None, validators=outcome.validators, content_hash=document.content_hash)
            )
        # Items past --max-items are still at the source: whatever of them was indexed before stays.
        listed = {item.key for item in items}
        keep |= {s.document_id for s in states.values() if s.key in listed and s.content_hash is not None}
        stopped = stop is not None and stop.is_set()
        prune = (
            listing.complete and not listing.not_modified and bool(items) and not channel.keep_missing and not stopped
        )
        result.pruned_allowed = prune
        prefix = document_prefix(channel.creator, channel.id)
        report = self.indexer.ingest_documents(
            creator, documents, owns=lambda d: d.startswith(prefix), keep=keep, prune=prune, failed=failures
        )
        report.unchanged += plan.unchanged
        result.report = report
        removed = [h for h, s in states.items() if s.key not in listed] if prune else []
        if failures:
            result.status = "partial"
        if stopped:
            result.status = "partial"
            result.notes.append("stopped before the end (the service is shutting down): nothing pruned")
        finished = SyncOutcome(
            status=result.status, error=failures[0].error if failures else None,
            next_sync_at=utcnow() + timedelta(seconds=channel.interval_seconds), failures=0, report=None,
            etag=listing.validators.etag, last_modified=listing.validators.last_modified,
            keep_validators=listing.not_modified, upserts=upserts, removed=removed,
        )  # fmt: skip
        return self._finish(claimed, result, started, clock, finished)

    def _finish(
        self, claimed: _Claimed, result: ChannelReport, started: datetime, clock: float, outcome: SyncOutcome
    ) -> ChannelReport:
        result.report.seconds = time.perf_counter() - clock
        summary = result.as_json()
        outcome.report = summary
        channel = claimed.channel

        async def write(sessions: Sessions) -> bool:
            if not await channels_store.finish_sync(sessions, channel.id, owner=self.owner, outcome=outcome):
                return False
            await runs_store.record_run(
                sessions, origin="channel", creator=channel.creator, paths=[channel.url], dry_run=False,
                ok=result.status == "ok", report=summary, error=result.error, started_at=started,
                finished_at=utcnow(),
            )  # fmt: skip
            return True

        if not self.database.run(write):
            result.status, result.error = "failed", "lost its claim on the channel (lease lapsed) before recording"
        return result

    def _backoff(self, channel: ChannelView) -> datetime:
        """After the n-th failure in a row: RETRY_SECONDS (or the interval, if shorter) doubled n-1 times, at most
        max_backoff_hours (or the interval, if longer). A passing fault is retried soon; a lasting one less and
        less often."""
        base = min(RETRY_SECONDS, channel.interval_seconds)
        ceiling = max(self.settings.channels.max_backoff_hours * 3600, channel.interval_seconds)
        return utcnow() + timedelta(seconds=min(base * 2 ** min(channel.failures, 20), ceiling))

    def _plan(self, channel: ChannelView, states: dict[str, ItemState], items: list[Item]) -> _Plan:
        plan = _Plan()
        for item in items:
            previous = states.get(item.key_hash)
            # The listing says nothing changed (a token to compare, or none at all for an item only its server can
            # tell about, which `revalidate` then asks).
            same = (
                previous is not None
                and previous.content_hash is not None
                and previous.token == item.token
                and (item.token is not None or item.revalidate)
            )
            if same and not item.revalidate:
                assert previous is not None
                plan.kept.add(previous.document_id)
                plan.unchanged += 1
            elif same:
                assert previous is not None
                plan.work.append((item, Validators(previous.etag, previous.last_modified), previous))
            else:
                plan.work.append((item, None, previous))
        return plan

    def _fetch_all(
        self,
        connector: Any,
        http: Fetcher,
        work: list[tuple[Item, Validators | None, ItemState | None]],
        stop: threading.Event | None,
    ) -> list[Fetched | FetchError | None]:
        """Fetch the items that need it, in parallel (each host's own limits apply inside the fetcher), in order;
        an item not reached before `stop` was set is None."""
        results: list[Fetched | FetchError | None] = [None] * len(work)
        if not work:
            return results
        workers = min(16, max(1, self.settings.channels.per_host_concurrency * 2))

        def one(index: int) -> None:
            if stop is not None and stop.is_set():
                return
            item, validators, previous = work[index]
            indexed = previous is not None and previous.content_hash is not None
            try:
                results[index] = connector.fetch(item, http, validators, indexed=indexed)
            except FetchError as exc:
                results[index] = exc
            except ParseError as exc:
                results[index] = FetchError(exc.reason)
            except Exception as exc:  # a connector bug or a library surprise: one item's failure, not the sync's
                log.exception("channel item %s failed", item.url)
                results[index] = FetchError(f"unexpected error ({type(exc).__name__}: {exc})")

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="channel-fetch") as pool:
            list(pool.map(one, range(len(work))))
        return results


class _Heartbeat:
    """Renews a sync's claim every `every` seconds from a thread of its own. `stop` is set when the caller's stop
    is (a shutdown) or the claim was lost (`lost`), so the sync ends at its next item either way."""

    def __init__(self, renew: Callable[[], bool], *, every: float, stop: threading.Event | None) -> None:
        self._renew = renew
        self._every = every
        self._outer = stop
        self.stop = threading.Event()
        self.lost = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="channel-lease", daemon=True)

    def __enter__(self) -> _Heartbeat:
        if self._outer is not None and self._outer.is_set():
            self.stop.set()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        renewed = time.monotonic()
        while not self._done.wait(0.2):
            if self._outer is not None and self._outer.is_set():
                self.stop.set()
            if time.monotonic() - renewed < self._every:
                continue
            renewed = time.monotonic()
            try:
                held = self._renew()
            except Exception:  # the database unreachable for a moment: the lease still runs, try again later
                log.warning("channel lease renewal failed", exc_info=True)
                continue
            if not held:
                self.lost = True
                self.stop.set()


@dataclass(slots=True)
class _Plan:
    work: list[tuple[Item, Validators | None, ItemState | None]] = field(default_factory=list)
    kept: set[str] = field(default_factory=set)
    unchanged: int = 0


def _state(
    item: Item,
    doc_id: str,
    previous: ItemState | None,
    *,
    validators: Validators | None = None,
    content_hash: str | None = None,
    error: str | None = None,
    ok: bool = False,
) -> ItemState:
    """The row an item leaves: transient data (keys starting with "_", such as an entry's whole text) not kept."""
    stored = {**item.as_json(), "data": {k: v for k, v in item.data.items() if not k.startswith("_")}}
    if error is not None:
        # Failed: the next sync fetches it whole again (token cleared), its last document (if any) kept meanwhile.
        return ItemState(
            key=item.key, key_hash=item.key_hash, document_id=doc_id, item=stored, token=None,
            etag=previous.etag if previous else None, last_modified=previous.last_modified if previous else None,
            content_hash=previous.content_hash if previous else None, error=error,
        )  # fmt: skip
    kept = validators or Validators()
    return ItemState(
        key=item.key, key_hash=item.key_hash, document_id=doc_id, item=stored, token=item.token, etag=kept.etag,
        last_modified=kept.last_modified,
        content_hash=content_hash if content_hash is not None else (previous.content_hash if ok and previous else None),
    )  # fmt: skip
