"""Curator analytics at scale: the dashboard's queries and the gap inbox over 100k stored turns.

Fills a fresh database (SQLite in a temp dir, and PostgreSQL when --pg or LORECHAT_TEST_PG_URL names one: a
throwaway database, dropped after) with N turns spread over 30 days across 5 creators and unscoped
questions, with realistic gap signals (~5 % not covered, ~3 % unsupported claims, ~2 % extractive only,
~4 % rated, a third of those 👎). Then times, each repeated and reported as p50/max:

- every dashboard table (questions per day, answers per tier, TTFT p50, feedback, sites, runs, creators,
  the gap inbox listing), i.e. one /admin page load without the gap refresh;
- the gap inbox's first grouping (all gap turns embedded with the bundled model) and an incremental
  refresh after 100 new gap turns (what a dashboard load costs in steady state).

    .venv/bin/python -m scripts.bench.curator                 # 100k turns, SQLite (+ PostgreSQL if configured)
    .venv/bin/python -m scripts.bench.curator --turns 20000 --no-pg
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import Table, text

from backend.catalog import Catalog
from backend.curation.dashboard import TABLES, build_table
from backend.curation.gaps import refresh_gaps
from backend.retrieval.embedder import get_embedder
from backend.settings import DatabaseSettings, EmbeddingSettings, RedisSettings, Settings
from backend.storage.db import create_engine, migrate, session_factory
from backend.storage.models import Conversation, Feedback, Message, Site, SiteUsage, new_id
from scripts.bench import benchlib

CREATORS = ["ada", "bram", "cleo", "dina", "emil", None]
TOPICS = [
    "fold {x} croissant dough",
    "proof {x} rye overnight",
    "store {x} sourdough starter",
    "bake {x} at altitude",
    "replace eggs in {x} brioche",
    "shape a {x} baguette",
    "fix a dense {x} crumb",
    "hydrate {x} spelt flour",
    "score {x} boules",
    "cool {x} loaves",
    "freeze {x} dough",
    "use {x} steam in a home oven",
]
WORDS = ["the", "my", "a small", "a big", "whole-wheat", "holiday", "quick", "slow", "cold", "warm"]
EXTRACTIVE = ["extractive"]
# The tables behind the models, written in bulk through SQLAlchemy Core (the models type them as any FromClause).
CONVERSATIONS = cast(Table, Conversation.__table__)
MESSAGES = cast(Table, Message.__table__)
FEEDBACK = cast(Table, Feedback.__table__)
SITES = cast(Table, Site.__table__)
SITE_USAGE = cast(Table, SiteUsage.__table__)


def question(rng: random.Random) -> str:
    topic = rng.choice(TOPICS).format(x=rng.choice(WORDS))
    return rng.choice(["How do I {t}?", "What is the best way to {t}?", "Can I {t}?", "Why {t}?"]).format(t=topic)


async def fill(sessions: Any, *, turns: int, seed: int = 7) -> int:
    """N turns (question + answer), 4 per conversation; returns how many answers carry a gap signal."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    gaps = 0
    batch_conv: list[dict[str, Any]] = []
    batch_msg: list[dict[str, Any]] = []
    batch_fb: list[dict[str, Any]] = []

    async def flush() -> None:
        async with sessions() as session, session.begin():
            if batch_conv:
                await session.execute(CONVERSATIONS.insert(), batch_conv)
            if batch_msg:
                await session.execute(MESSAGES.insert(), batch_msg)
            if batch_fb:
                await session.execute(FEEDBACK.insert(), batch_fb)
        batch_conv.clear()
        batch_msg.clear()
        batch_fb.clear()

    for n in range(turns):
        if n % 4 == 0:
            conversation = new_id()
            started = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
            batch_conv.append(
                {
                    "id": conversation,
                    "owner_id": None,
                    "creator": rng.choice(CREATORS),
                    "title": "t",
                    "created_at": started,
                    "updated_at": started,
                    "deleted_at": None,
                }
            )
        at = started + timedelta(seconds=n % 4 * 60)
        roll = rng.random()
        unanswered, unsupported, tier = roll < 0.05, int(0.05 <= roll < 0.08), "extractive" if roll > 0.98 else "local"
        answer = new_id()
        common = {
            "conversation_id": conversation,
            "search_query": "",
            "usage": None,
            "error_code": None,
            "finished_at": at,
            "lease_owner": None,
            "lease_expires_at": None,
            "citations": None,
        }
        batch_msg.append(
            {
                **common,
                "id": new_id(),
                "seq": n % 4 * 2,
                "role": "user",
                "content": question(rng),
                "status": "done",
                "cascade_tier": None,
                "sources": [],
                "created_at": at,
                "unsupported_claims": 0,
                "unanswered": False,
                "ttft_ms": None,
            }
        )
        source = {"document_id": f"doc-{rng.randint(1, 400)}", "title": "Doc", "score": round(rng.random(), 3)}
        batch_msg.append(
            {
                **common,
                "id": answer,
                "seq": n % 4 * 2 + 1,
                "role": "assistant",
                "content": "An answer.",
                "status": "done",
                "cascade_tier": tier,
                "sources": [source],
                "created_at": at,
                "unsupported_claims": unsupported,
                "unanswered": unanswered,
                "ttft_ms": rng.randint(150, 4000),
            }
        )
        down = False
        if rng.random() < 0.04:
            down = rng.random() < 0.33
            batch_fb.append(
                {
                    "message_id": answer,
                    "rating": "down" if down else "up",
                    "comment": None,
                    "created_at": at,
                    "updated_at": at,
                }
            )
        gaps += bool(unanswered or unsupported or tier == "extractive" or down)
        if len(batch_msg) >= 4000:
            await flush()
    await flush()
    async with sessions() as session, session.begin():
        for i in range(20):
            await session.execute(
                SITES.insert(),
                [
                    {
                        "name": f"site-{i}",
                        "origins": [f"https://s{i}.example"],
                        "creators": [],
                        "daily_limit": 1000,
                        "created_at": now,
                    }
                ],
            )
            await session.execute(
                SITE_USAGE.insert(),
                [
                    {
                        "site": f"site-{i}",
                        "day": (now - timedelta(days=d)).strftime("%Y-%m-%d"),
                        "requests": rng.randint(0, 1000),
                        "refused": 0,
                    }
                    for d in range(30)
                ],
            )
    return gaps


async def timed(work: Any, repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        await work()
        seconds.append(time.perf_counter() - start)
    return seconds


async def run(url: str, label: str, *, turns: int, repeat: int, embedder: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), database=DatabaseSettings(url=url), redis=RedisSettings(url=""))
        engine = create_engine(settings)
        try:
            await migrate(engine)
            sessions = session_factory(engine)
            start = time.perf_counter()
            gap_turns = await fill(sessions, turns=turns)
            fill_s = time.perf_counter() - start
            if engine.dialect.name == "postgresql":
                # Steady state, as autovacuum leaves it: planner statistics and a visibility map for index-only
                # scans (right after a bulk load PostgreSQL has neither, and the figures would be 2-4x worse).
                async with engine.connect() as connection:
                    autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                    await autocommit.execute(text("VACUUM ANALYZE"))

            async def embed(texts: list[str]) -> np.ndarray:
                return embedder.embed_documents(texts)

            start = time.perf_counter()
            grouped = await refresh_gaps(sessions, embed, extractive_tiers=EXTRACTIVE)
            first_refresh_s = time.perf_counter() - start
            catalog = Catalog()
            rows: list[list[Any]] = []
            result: dict[str, Any] = {
                "backend": label,
                "turns": turns,
                "gap_turns": gap_turns,
                "grouped": grouped,
                "fill_s": round(fill_s, 1),
                "first_refresh_s": round(first_refresh_s, 2),
            }
            total_p50 = 0.0
            for name in TABLES:
                seconds = await timed(lambda name=name: build_table(name, sessions=sessions, catalog=catalog), repeat)
                stats = benchlib.summary_ms(seconds)
                total_p50 += stats["p50_ms"]
                rows.append([label, name, stats["p50_ms"], stats["max_ms"]])
                result[f"{name}_ms"] = stats
            await fill_more(sessions, 100)
            incremental = await timed(lambda: refresh_gaps(sessions, embed, extractive_tiers=EXTRACTIVE), 1)
            noop = await timed(lambda: refresh_gaps(sessions, embed, extractive_tiers=EXTRACTIVE), repeat)
            rows.append([label, "gap refresh, 100 new gap turns", round(incremental[0] * 1000, 1), "—"])
            quiet = benchlib.summary_ms(noop)
            rows.append([label, "gap refresh, nothing new", quiet["p50_ms"], quiet["max_ms"]])
            rows.append([label, "whole dashboard (sum of p50)", round(total_p50, 1), "—"])
            result.update(
                incremental_refresh_ms=round(incremental[0] * 1000, 1),
                noop_refresh_ms=benchlib.summary_ms(noop),
                dashboard_p50_sum_ms=round(total_p50, 1),
            )
            benchlib.print_table(
                f"{label}: {turns:,} turns ({gap_turns:,} gap answers → {grouped:,} grouped in "
                f"{first_refresh_s:.1f} s; filled in {fill_s:.0f} s)",
                ["backend", "query", "p50 ms", "max ms"],
                rows,
            )
            return result
        finally:
            await engine.dispose()


async def fill_more(sessions: Any, count: int) -> None:
    """`count` new unanswered turns in one new conversation each, asked now."""
    rng = random.Random(99)
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        for _ in range(count):
            conversation = new_id()
            await session.execute(
                CONVERSATIONS.insert(),
                [
                    {
                        "id": conversation,
                        "owner_id": None,
                        "creator": "ada",
                        "title": "t",
                        "created_at": now,
                        "updated_at": now,
                    }
                ],
            )
            for seq, role in ((0, "user"), (1, "assistant")):
                await session.execute(
                    MESSAGES.insert(),
                    [
                        {
                            "id": new_id(),
                            "conversation_id": conversation,
                            "seq": seq,
                            "role": role,
                            "content": question(rng) if role == "user" else "Not covered.",
                            "status": "done",
                            "sources": [],
                            "search_query": "",
                            "created_at": now,
                            "unanswered": role == "assistant",
                        }
                    ],
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pg", default=os.environ.get("LORECHAT_TEST_PG_URL", ""), help="PostgreSQL base URL")
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    embedder = get_embedder(EmbeddingSettings())
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        results.append(asyncio.run(run(sqlite_url, "sqlite", turns=args.turns, repeat=args.repeat, embedder=embedder)))
    if args.pg and not args.no_pg:
        from tests.databases import throwaway_database

        with throwaway_database(args.pg, prefix="lorechat_bench") as url:
            results.append(asyncio.run(run(url, "postgresql", turns=args.turns, repeat=args.repeat, embedder=embedder)))
    path = benchlib.write_results("curator", {"machine": benchlib.machine(), "results": results})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
