"""Channel syncs: first sync, unchanged re-sync and one-edit re-sync of a 1,000-item channel served locally.

Two channels of --items entries each, served by a local HTTP server with ETags and Last-Modified (304s):
  - `feed-full`: an RSS feed whose entries hold their whole text (content:encoded), so a re-sync of an unchanged
    feed is one conditional request;
  - `feed-pages`: an RSS feed of summaries, each entry's text on the page it links to, so a re-sync asks the
    feed and every page again with their validators (answered 304).
Each is synced through `ChannelSync` (the code `lorechat channels sync` runs) into a fresh Edge shard with the
bundled model and a SQLite catalog: the first sync, a re-sync with nothing changed, and a re-sync after one
entry was edited, each with its time, requests, 304s and chunks embedded.

    .venv/bin/python -m scripts.bench.channels                  # 1,000 items, per_host_concurrency 2, no delay
    .venv/bin/python -m scripts.bench.channels --items 200 --concurrency 4
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from scripts.bench import benchlib

WORDS = (
    "flour water salt levain crumb crust oven steam proof fold shape score bake rye spelt hydration dough "
    "banneton autolyse starter knead rest temperature scald seed malt honey butter milk egg yeast sugar"
).split()


class Site:
    """Resources by path, each with an ETag and a Last-Modified; conditional GETs answered with 304."""

    def __init__(self) -> None:
        self.resources: dict[str, tuple[bytes, str, str, str]] = {}
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def put(self, path: str, body: str, content_type: str) -> None:
        data = body.encode()
        etag = f'"{hashlib.sha256(data).hexdigest()[:16]}"'
        with self.lock:
            previous = self.resources.get(path)
            stamp = time.time() + (1 if previous else 0)  # an edit is at least a second later (HTTP dates)
            self.resources[path] = (data, content_type, etag, email.utils.formatdate(stamp, usegmt=True))

    def url(self, path: str) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    @contextmanager
    def running(self) -> Iterator[Site]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with site.lock:
                    found = site.resources.get(self.path)
                if found is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data, content_type, etag, modified = found
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                for name, value in (("Content-Type", content_type), ("Content-Length", str(len(data))),
                                    ("ETag", etag), ("Last-Modified", modified)):  # fmt: skip
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        class Quiet(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self.server = Quiet(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


def text_for(number: int, words: int = 120) -> str:
    """A paragraph of bread words, different for every item."""
    picked = [WORDS[(number * 7 + i * (number % 5 + 1)) % len(WORDS)] for i in range(words)]
    return f"Entry {number} about item-{number}: " + " ".join(picked) + "."


def publish(site: Site, items: int, *, edited: int | None = None) -> None:
    full, linked = [], []
    for n in range(items):
        text = text_for(n) + (" Edited once." if n == edited else "")
        day = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(1_700_000_000 + n * 3600))
        head = f"<title>Entry {n}</title><guid isPermaLink='false'>entry-{n}</guid><pubDate>{day}</pubDate>"
        full.append(
            f"<item>{head}<link>{site.url(f'/full/{n}')}</link><content:encoded><![CDATA[<p>{text}</p>]]>"
            "</content:encoded></item>"
        )
        linked.append(f"<item>{head}<link>{site.url(f'/pages/{n}')}</link><description>Entry {n}.</description></item>")
        site.put(
            f"/pages/{n}",
            f"<html><head><title>Entry {n}</title></head><body><nav>Home · About</nav><main><h1>Entry {n}</h1>"
            f"<p>{text}</p></main><footer>Ada's bakery</footer></body></html>",
            "text/html; charset=utf-8",
        )
    for path, entries in (("/full.xml", full), ("/pages.xml", linked)):
        site.put(
            path,
            "<?xml version='1.0' encoding='utf-8'?><rss version='2.0' "
            "xmlns:content='http://purl.org/rss/1.0/modules/content/'><channel><title>Bench</title>"
            f"<link>{site.url('/')}</link>{''.join(entries)}</channel></rss>",
            "application/rss+xml",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1000, help="entries per channel (default 1000)")
    parser.add_argument("--concurrency", type=int, default=2, help="channels.per_host_concurrency (default 2)")
    parser.add_argument("--delay", type=float, default=0.0, help="channels.per_host_delay_seconds (default 0)")
    args = parser.parse_args()

    from backend.curation import channels_store
    from backend.retrieval.embedder import get_embedder
    from backend.retrieval.search import Retriever
    from backend.retrieval.stores.edge import EdgeStore
    from backend.settings import ChannelSettings, DatabaseSettings, EmbeddingSettings, RedisSettings, Settings
    from pipeline.channels.sync import ChannelSync
    from pipeline.curator_db import with_sessions
    from pipeline.indexer import Indexer

    embedder = get_embedder(EmbeddingSettings())
    embedder.embed_documents(["warm up"])
    rows: list[list[Any]] = []
    results: dict[str, Any] = {"items": args.items, "concurrency": args.concurrency, "delay": args.delay, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp, Site().running() as site:
        publish(site, args.items)
        settings = Settings(
            data_dir=Path(tmp) / "data", database=DatabaseSettings(url=""), redis=RedisSettings(url=""),
            channels=ChannelSettings(allow_private_networks=True, per_host_concurrency=args.concurrency,
                                     per_host_delay_seconds=args.delay, timeout_seconds=30, item_seconds=60),
        )  # fmt: skip
        store = EdgeStore(Path(tmp) / "index", hnsw_ef=128)
        try:
            retriever = Retriever(embedder=embedder, store=store, settings=settings.retrieval)
            syncer = ChannelSync(Indexer.from_settings(settings, retriever), settings)
            for name, path in (("feed-full", "/full.xml"), ("feed-pages", "/pages.xml")):

                def add(sessions: Any, url: str = site.url(path)) -> Any:
                    return channels_store.add_channel(
                        sessions, creator="bench", url=url, kind="feed", interval_seconds=3600, max_items=None,
                        depth=None, keep_missing=True,
                    )  # fmt: skip

                channel = with_sessions(settings, add)
                for step in ("first sync", "re-sync, unchanged", "re-sync, 1 edited"):
                    if step == "re-sync, 1 edited":
                        publish(site, args.items, edited=args.items // 2)
                    started = time.perf_counter()
                    report = syncer.sync(channel.id)
                    seconds = time.perf_counter() - started
                    r, requests = report.report, report.requests
                    rows.append([
                        f"{name}: {step}", round(seconds, 2), requests["total"], requests["not_modified"],
                        r.added, r.updated, r.unchanged, r.chunks_written,
                    ])  # fmt: skip
                    results["runs"][f"{name}: {step}"] = {"seconds": round(seconds, 3), **report.as_json()}
                    publish(site, args.items)  # back to the unedited text for the next channel
        finally:
            store.close()
    benchlib.print_table(
        f"Channel syncs, {args.items} items per channel "
        f"(per_host_concurrency {args.concurrency}, delay {args.delay} s)",
        ["run", "seconds", "requests", "304", "added", "updated", "unchanged", "chunks embedded"],
        rows,
    )
    benchlib.write_results("channels", results)


if __name__ == "__main__":
    main()
