"""Channel syncs end to end (CH1, CH3, CH4, CH6): a real local server, the bundled model, a real Edge shard and the
channels in SQLite or PostgreSQL. First syncs index every item; re-syncs of unchanged sources embed nothing and are
answered by 304s; an edit re-embeds that document only; pruning happens only after a whole, successful read; a
failing channel backs off while the others go on; a channel is never synced twice at once."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend.curation import channels_store, runs_store
from backend.curation.channels_store import ChannelView
from backend.retrieval.embedder import Embedder
from backend.retrieval.search import Retriever
from backend.retrieval.stores.edge import EdgeStore
from backend.settings import ChannelSettings, ChunkingSettings, DatabaseSettings, RedisSettings, Settings
from backend.storage.models import utcnow
from pipeline.catalog_update import read_catalog
from pipeline.channels.sync import ChannelReport, ChannelSync, document_prefix
from pipeline.curator_db import OwnEngine, with_sessions
from pipeline.indexer import Indexer
from tests.conftest import PG_URL
from tests.databases import throwaway_database
from tests.fakes.web_server import Fault, WebServer
from tests.pipeline.channels.corpus import (
    BLOG_POSTS,
    RSS,
    SITE_PAGES,
    blog_feed,
    podcast_feed,
    sitemap_site,
    video_page,
    xml_bomb,
)


class CountingModel:
    """The bundled model, counting every text it embeds (documents and their sentences alike)."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self.embedded: Counter[str] = Counter()
        self._lock = threading.Lock()

    def embed_documents(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        with self._lock:
            self.embedded.update(texts)
        return self._inner.embed_documents(texts, batch_size=batch_size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class Env:
    settings: Settings
    syncer: ChannelSync
    model: CountingModel
    retriever: Retriever

    def add(self, kind: str, url: str, *, keep_missing: bool | None = None, **options: Any) -> int:
        keep = keep_missing if keep_missing is not None else kind in ("feed", "podcast", "video")
        values = {"max_items": None, "depth": None, "interval_seconds": 6 * 3600, **options}
        channel = with_sessions(
            self.settings,
            lambda s: channels_store.add_channel(s, creator="ada", url=url, kind=kind, keep_missing=keep, **values),
        )
        return int(channel.id)

    def sync(self, channel_id: int) -> ChannelReport:
        self.model.embedded.clear()
        return self.syncer.sync(channel_id)

    def channel(self, channel_id: int) -> ChannelView:
        found = with_sessions(self.settings, lambda s: channels_store.get_channel(s, channel_id))
        assert found is not None
        return found

    def documents(self, channel_id: int) -> dict[str, Any]:
        prefix = document_prefix("ada", channel_id)
        return {d: s for d, s in self.retriever.store.documents("ada").items() if d.startswith(prefix)}


def make_env(tmp_path: Path, embedder: Embedder, database_url: str, channel_settings: ChannelSettings) -> Iterator[Env]:
    settings = Settings(
        data_dir=tmp_path / "data", database=DatabaseSettings(url=database_url), redis=RedisSettings(url=""),
        chunking=ChunkingSettings(size_tokens=32, overlap_tokens=0), channels=channel_settings,
    )  # fmt: skip
    store = EdgeStore(tmp_path / "index", hnsw_ef=128)
    model = CountingModel(embedder)
    retriever = Retriever(embedder=model, store=store, settings=settings.retrieval)  # type: ignore[arg-type]
    try:
        yield Env(settings, ChannelSync(Indexer.from_settings(settings, retriever), settings), model, retriever)
    finally:
        store.close()


@pytest.fixture
def env(tmp_path: Path, shared_embedder: Embedder, channel_settings: ChannelSettings) -> Iterator[Env]:
    yield from make_env(tmp_path, shared_embedder, "", channel_settings)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_env(
    request: pytest.FixtureRequest, tmp_path: Path, shared_embedder: Embedder, channel_settings: ChannelSettings
) -> Iterator[Env]:
    if request.param == "sqlite":
        yield from make_env(tmp_path, shared_embedder, "", channel_settings)
        return
    with throwaway_database(PG_URL, prefix="lorechat_channels") as url:
        yield from make_env(tmp_path, shared_embedder, url, channel_settings)


def test_ch1_the_first_sync_indexes_every_item_and_is_an_ingest_run(any_env: Env, web: WebServer) -> None:
    env = any_env
    blog = env.add("feed", blog_feed(web, summary_only=("rye",)))
    podcast = env.add("podcast", podcast_feed(web))
    video = env.add("video", video_page(web))
    reports = env.syncer.sync_target(None)
    assert [(r.channel_id, r.status, r.report.added, r.report.failed) for r in reports] == [
        (blog, "ok", 3, []), (podcast, "ok", 5, []), (video, "ok", 1, []),
    ]  # fmt: skip
    assert reports[1].notes == [f"{web.url('/podcast/episodes/5')}: no transcript: indexed the show notes"]
    # The answer to a question about episode 1 cites the episode page at the cue: the widget links url#t=65.
    hit = env.retriever.search("what keeps a banneton from sticking", creator="ada", k=1)[0]
    assert (hit.url, hit.start_seconds, hit.title) == (web.url("/podcast/episodes/1"), 65.5, "Episode 1")
    hit = env.retriever.search("when to fold the dough during bulk", creator="ada", k=1)[0]
    assert (hit.url, hit.start_seconds) == (web.url("/podcast/audio/2.mp3"), 120.0)  # no page: the audio itself
    hit = env.retriever.search("how to build tension when shaping", creator="ada", k=1)[0]
    assert (hit.url, hit.start_seconds, hit.title) == (web.url("/video/shaping.html"), 42.0, "Shaping a batard")
    hit = env.retriever.search("scald rye flour", creator="ada", k=1)[0]
    assert hit.url == web.url("/blog/rye.html") and "zembrot" in hit.text  # the linked page's main text
    # The catalog lists them (its creator entry named after the slug until a folder's creator.yaml says more).
    catalog = read_catalog(OwnEngine(env.settings), env.settings.data_dir)
    documents = catalog.creators["ada"].documents.values()
    assert len(documents) == 9 and {d.kind for d in documents} == {"article", "transcript"}
    channel = env.channel(podcast)
    assert (channel.last_status, channel.items, channel.documents, channel.failures) == ("ok", 5, 5, 0)
    assert channel.next_sync_at is not None and channel.last_sync_at is not None
    assert channel.next_sync_at - channel.last_sync_at == pytest.approx(timedelta(hours=6), abs=timedelta(minutes=1))
    runs = with_sessions(env.settings, lambda s: runs_store.recent_runs(s))
    assert sorted((r.origin, r.creator, r.ok, r.report["added"]) for r in runs) == [  # type: ignore[index]
        ("channel", "ada", True, 1), ("channel", "ada", True, 3), ("channel", "ada", True, 5),
    ]  # fmt: skip


def test_ch3_a_resync_with_nothing_changed_embeds_nothing_and_is_answered_by_304s(env: Env, web: WebServer) -> None:
    blog = env.add("feed", blog_feed(web, summary_only=tuple(BLOG_POSTS)))  # every entry reads its page
    site = env.add("sitemap", sitemap_site(web, lastmod=False))  # no lastmod: every page asked again
    podcast = env.add("podcast", podcast_feed(web))
    first = [env.sync(channel) for channel in (blog, site, podcast)]
    assert [r.report.added for r in first] == [3, 3, 5]
    again = [env.sync(channel) for channel in (blog, site, podcast)]
    assert not env.model.embedded  # not one text through the model
    assert [(r.report.unchanged, r.report.added, r.report.updated, r.report.chunks_written) for r in again] == [
        (3, 0, 0, 0), (3, 0, 0, 0), (5, 0, 0, 0),
    ]  # fmt: skip
    total = sum(r.requests["total"] for r in again)
    not_modified = sum(r.requests["not_modified"] for r in again)
    assert not_modified >= 0.7 * total  # listings and pages: 304s (plus one robots.txt per sync)
    assert again[2].requests == {"total": 2, "not_modified": 1, "failed": 0, "bytes": 0}  # robots.txt, feed: 304


def test_ch3_an_edited_entry_re_embeds_that_document_only(env: Env, web: WebServer) -> None:
    posts = dict(BLOG_POSTS)
    blog = env.add("feed", blog_feed(web, posts=posts, summary_only=("rye",)))
    env.sync(blog)
    before = env.documents(blog)
    posts["salt"] = ("Salt and the crumb", "Edited: one and a half percent salt keeps the quillfeather crumb tender.")
    blog_feed(web, posts=posts, summary_only=("rye",))  # the feed and every page served again (all new ETags)
    report = env.sync(blog)
    assert (report.report.updated, report.report.unchanged, report.report.added) == (1, 2, 0)
    assert all("quillfeather" in text or "Salt and the crumb" in text for text in env.model.embedded), (
        env.model.embedded
    )
    after = env.documents(blog)
    changed = [d for d in after if after[d].content_hash != before[d].content_hash]
    assert len(changed) == 1
    hit = env.retriever.search("how much salt now", creator="ada", k=1)[0]
    assert "one and a half percent" in hit.text  # the old chunk is gone, replaced


def test_ch4_a_url_removed_from_the_sitemap_is_pruned_and_a_feed_keeps_what_scrolls_out(
    env: Env, web: WebServer
) -> None:
    pages = dict(SITE_PAGES)
    site = env.add("sitemap", sitemap_site(web, pages=pages))
    posts = dict(BLOG_POSTS)
    window = env.add("feed", blog_feed(web, posts=posts))
    strict = env.add("feed", web.url("/blog/feed.xml") + "?strict", keep_missing=False)
    web.put("/blog/feed.xml?strict", web.resources["/blog/feed.xml"].body, RSS)
    for channel in (site, window, strict):
        env.sync(channel)
    del pages["water"]
    sitemap_site(web, pages=pages)
    del posts["rye"]
    blog_feed(web, posts=posts)
    web.put("/blog/feed.xml?strict", web.resources["/blog/feed.xml"].body, RSS)
    site_report, window_report, strict_report = (env.sync(c) for c in (site, window, strict))
    assert (site_report.report.pruned, len(env.documents(site)), env.channel(site).items) == (1, 2, 2)
    assert (window_report.report.pruned, len(env.documents(window))) == (0, 3)  # scrolled out: a window, kept
    assert (strict_report.report.pruned, len(env.documents(strict))) == (1, 2)  # --prune-missing
    assert not env.retriever.search("pellmore dough temperature", creator="ada", k=8) or all(
        "pellmore" not in hit.text for hit in env.retriever.search("pellmore dough temperature", creator="ada", k=8)
    )


@pytest.mark.parametrize(
    "fault",
    ["500", "timeout", "slow drip", "malformed", "xml bomb", "50 MB", "redirect loop", "robots", "truncated", "empty"],
)
def test_ch4_a_listing_that_was_not_read_whole_prunes_nothing(env: Env, web: WebServer, fault: str) -> None:
    url = sitemap_site(web)
    site = env.add("sitemap", url)
    assert env.sync(site).report.added == 3
    path = "/site/sitemap.xml"
    if fault == "500":
        web.fault(path, Fault("status", status=500))
    elif fault == "timeout":
        web.fault(path, Fault("stall", seconds=3))
    elif fault == "slow drip":
        web.fault(path, Fault("drip", seconds=0.1))
    elif fault == "malformed":
        web.put(path, "<urlset><url><loc>" + web.url("/site/ovens") + "</loc></url>", "application/xml")
    elif fault == "xml bomb":
        web.put(path, xml_bomb(), "application/xml")
    elif fault == "50 MB":
        web.fault(path, Fault("big", size=50 * 1024 * 1024, declare_length=False))
    elif fault == "redirect loop":
        web.fault(path, Fault("redirect", status=302, location=path))
    elif fault == "robots":
        web.put("/robots.txt", "User-agent: *\nDisallow: /site/\n", "text/plain")
    elif fault == "truncated":
        web.fault(path, Fault("truncate", size=50_000))
    else:
        web.put(path, "<urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'></urlset>", "application/xml")
    report = env.sync(site)
    assert report.report.pruned == 0 and len(env.documents(site)) == 3
    channel = env.channel(site)
    if fault == "empty":
        assert report.status == "ok" and channel.failures == 0  # read fine, but an empty listing never prunes
        return
    assert report.status == "failed" and report.error and channel.last_error == report.error
    assert channel.failures == 1 and channel.last_status == "failed"
    assert channel.next_sync_at is not None  # retried in 15 minutes, then later and later
    assert timedelta(minutes=14) < channel.next_sync_at - utcnow() <= timedelta(minutes=15)


def test_ch6_a_failing_channel_backs_off_shows_its_error_and_the_others_go_on(env: Env, web: WebServer) -> None:
    broken = env.add("feed", web.url("/gone.xml"))
    podcast = env.add("podcast", podcast_feed(web))
    reports = env.syncer.sync_due()
    assert [(r.channel_id, r.status) for r in reports] == [(broken, "failed"), (podcast, "ok")]
    assert "answered 404" in (env.channel(broken).last_error or "")
    assert env.syncer.sync_due() == []  # neither is due again yet
    delays = []
    for failures in range(2, 10):  # a curator's `channels sync ID` runs it anyway: failure after failure
        assert env.syncer.sync(broken).status == "failed" and env.channel(broken).failures == failures
        delays.append(round((env.channel(broken).next_sync_at - utcnow()).total_seconds() / 60))  # type: ignore[operator]
    assert delays == [30, 60, 120, 240, 480, 960, 1440, 1440]  # minutes: doubling, capped at max_backoff_hours


def test_ch6_never_two_syncs_of_one_channel_at_once(any_env: Env, web: WebServer) -> None:
    env = any_env
    podcast = env.add("podcast", podcast_feed(web))
    held = with_sessions(env.settings, lambda s: channels_store.claim(s, podcast, owner="other", lease_seconds=60))
    assert held
    busy = env.syncer.sync(podcast)
    assert busy.status == "busy" and not env.documents(podcast)
    assert env.syncer.sync_due() == []  # held channels are not due
    with_sessions(env.settings, lambda s: channels_store.release(s, podcast, owner="other"))
    # Two syncs started together: one runs, the other is told the channel is busy.
    web.fault("/podcast/feed.xml", Fault("stall", seconds=0.5))
    results: list[ChannelReport] = []
    threads = [
        threading.Thread(target=lambda: results.append(ChannelSync(env.syncer.indexer, env.settings).sync(podcast)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status for r in results) == ["busy", "failed"]  # the stall timed out in the one that ran
    assert not env.channel(podcast).syncing


def test_ch4_a_folder_ingest_with_prune_leaves_channel_documents(env: Env, web: WebServer, tmp_path: Path) -> None:
    folder = tmp_path / "content" / "ada"
    folder.mkdir(parents=True)
    (folder / "creator.yaml").write_text("name: Ada Baker\nbio: Bakes bread.\n", encoding="utf-8")
    (folder / "notes.md").write_text("# Notes\n\nPreheat the stone for an hour.\n", encoding="utf-8")
    env.syncer.indexer.ingest([folder])
    podcast = env.add("podcast", podcast_feed(web))
    env.sync(podcast)
    report = env.syncer.indexer.ingest([folder], prune=True)
    assert report.pruned == 0 and len(env.documents(podcast)) == 5
    catalog = read_catalog(OwnEngine(env.settings), env.settings.data_dir)
    assert catalog.creators["ada"].creator.name == "Ada Baker"  # the channel did not overwrite the folder's profile
    assert len(catalog.creators["ada"].documents) == 6
    (folder / "notes.md").unlink()
    (folder / "other.md").write_text("# Other\n\nSomething else entirely.\n", encoding="utf-8")
    assert env.syncer.indexer.ingest([folder], prune=True).pruned == 1  # the folder's own vanished file only
    assert len(env.documents(podcast)) == 5


def test_ch1_removing_a_channel_removes_its_documents(env: Env, web: WebServer) -> None:
    podcast = env.add("podcast", podcast_feed(web))
    blog = env.add("feed", blog_feed(web))
    env.sync(podcast)
    env.sync(blog)
    assert env.syncer.remove(podcast) == 5
    assert not env.documents(podcast) and len(env.documents(blog)) == 3
    catalog = read_catalog(OwnEngine(env.settings), env.settings.data_dir)
    assert len(catalog.creators["ada"].documents) == 3
    assert env.channel(blog).documents == 3
    assert with_sessions(env.settings, lambda s: channels_store.get_channel(s, podcast)) is None


def test_ch6_a_sync_stopped_by_a_shutdown_prunes_nothing_and_stays_due(env: Env, web: WebServer) -> None:
    site = env.add("sitemap", sitemap_site(web))
    env.sync(site)
    stop = threading.Event()
    stop.set()  # the service began shutting down
    report = env.syncer.sync(site, stop=stop)
    assert report.status == "failed" and report.error == "stopped: the service is shutting down"
    channel = env.channel(site)
    assert channel.failures == 0 and channel.next_sync_at is not None and channel.next_sync_at <= utcnow()
    assert len(env.documents(site)) == 3 and not channel.syncing
