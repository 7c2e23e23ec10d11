"""The curator loop's storage on real SQLite and PostgreSQL: feedback, site budgets, gap topics, stats, runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.curation import feedback_store, gaps_store, runs_store, sites_store, stats_store
from backend.curation.gaps import refresh_gaps
from backend.errors import ErrorCode, LorechatError
from backend.retrieval.embedder import Embedder
from backend.storage import repository as repo
from backend.storage.models import Message, Site, utcnow
from backend.storage.records import MessageStatus

pytestmark = pytest.mark.services

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def clean(engine: AsyncEngine) -> AsyncIterator[None]:
    async with engine.begin() as connection:
        for table in ("gap_members", "gap_topics", "site_usage", "sites", "ingest_runs", "feedback"):
            await connection.execute(text(f"DELETE FROM {table}"))
    yield


async def answered(
    sessions: Sessions,
    question: str,
    *,
    creator: str | None = "ada",
    owner_id: str | None = None,
    tier: str = "upstream",
    status: MessageStatus = MessageStatus.done,
    **checks: Any,
) -> repo.Turn:
    """A stored turn whose answer finished; `checks` sets the claim-check columns (unanswered, …)."""
    turn = await repo.start_turn(sessions, conversation_id=None, owner_id=owner_id, creator=creator, question=question)
    await repo.finish_turn(
        sessions, assistant_message_id=turn.assistant_message_id, content="An answer.", status=status,
        cascade_tier=tier, sources=[{"document_id": "ada/a.md", "title": "A", "score": 0.4, "creator": creator}],
        usage=None, search_query=question, error_code=None,
    )  # fmt: skip
    if checks:
        async with sessions() as session, session.begin():
            await session.execute(update(Message).where(Message.id == turn.assistant_message_id).values(**checks))
    return turn


async def test_feedback_is_one_per_answer_and_follows_conversation_visibility(sessions: Sessions, clean: None) -> None:
    mine = await answered(sessions, "Owned question?", owner_id="alice")
    anonymous = await answered(sessions, "Anonymous question?")

    first = await feedback_store.put_feedback(
        sessions, message_id=mine.assistant_message_id, owner_id="alice", rating="up", comment=None
    )
    assert first is not None and first.rating == "up"
    changed = await feedback_store.put_feedback(
        sessions, message_id=mine.assistant_message_id, owner_id="alice", rating="down", comment="Wrong year\x00."
    )
    assert changed is not None and changed.rating == "down" and changed.comment == "Wrong year."
    async with sessions() as session:
        rows = (await session.execute(text("SELECT rating, comment FROM feedback"))).all()
    assert [tuple(row) for row in rows] == [("down", "Wrong year.")]  # replaced, not added

    # Someone else's owned answer, a made-up id, a malformed id: all "not visible".
    for owner, message_id in (("bob", mine.assistant_message_id), (None, mine.assistant_message_id),
                              ("alice", "A" * 22), ("alice", "bad id!")):  # fmt: skip
        assert (
            await feedback_store.put_feedback(
                sessions, message_id=message_id, owner_id=owner, rating="up", comment=None
            )
            is None
        )
    # Anonymous conversations by their id, for anyone (as the conversation API).
    assert await feedback_store.put_feedback(
        sessions, message_id=anonymous.assistant_message_id, owner_id="bob", rating="up", comment=None
    )
    # A question, or an answer still streaming, cannot be rated.
    streaming = await repo.start_turn(sessions, conversation_id=None, owner_id=None, creator=None, question="Hm?")
    for message_id in (anonymous.user_message_id, streaming.assistant_message_id):
        with pytest.raises(LorechatError) as caught:
            await feedback_store.put_feedback(sessions, message_id=message_id, owner_id=None, rating="up", comment=None)
        assert caught.value.code is ErrorCode.invalid_input


async def test_c2_site_origins_are_stored_and_matched_through_one_parser(
    sessions: Sessions, clean: None, tmp_path: Path
) -> None:
    """C2: storage keeps origins normalised and refuses malformed ones (invalid_input, nothing stored); the site
    guard normalises the Origin header and the stored origins alike, and a malformed one matches nothing."""
    from backend.curation.sites import admit_site
    from backend.settings import Settings

    site = await sites_store.add_site(
        sessions, name="blog", origins=["HTTPS://Blog.Example:443/", "http://[0:0::1]:8080", "https://blog.example"],
        creators=[], daily_limit=None,
    )  # fmt: skip
    assert site.origins == ["http://[::1]:8080", "https://blog.example"]
    for bad in ("https://*.example", "http://a..b", "https://exa mple.com", "https://blog.example\r"):
        with pytest.raises(LorechatError) as caught:
            await sites_store.add_site(sessions, name="bad", origins=["https://ok.example", bad], creators=[],
                                         daily_limit=None)  # fmt: skip
        assert caught.value.code is ErrorCode.invalid_input
        assert await sites_store.get_site(sessions, name="bad") is None
    async with sessions() as session, session.begin():  # written before the parser existed: raw, one malformed
        session.add(Site(name="legacy", origins=["https://Old.Example:443", "https://*.example"], creators=[],
                         daily_limit=None, created_at=utcnow()))  # fmt: skip

    settings = Settings(data_dir=tmp_path)
    for name, origin in (
        ("blog", "https://blog.example"),
        ("blog", "https://BLOG.example:443"),
        ("blog", "https://blog.example/"),
        ("blog", "http://[::0:1]:8080"),
        ("legacy", "https://old.example"),
    ):
        await admit_site(sessions, settings, site=name, origin=origin, creator="ada")
    for name, origin in (
        ("blog", None),
        ("blog", "null"),
        ("blog", "https://blog.example.evil"),
        ("blog", "https://evil.blog.example"),
        ("blog", "https://blog..example"),
        ("blog", "https://blog.example\r"),
        ("blog", "https://blog.example:8443"),
        ("blog", "http://blog.example"),
        ("blog", "https://user@blog.example"),
        ("legacy", "https://*.example"),
        ("legacy", "https://www.example"),
    ):
        with pytest.raises(LorechatError) as refused:
            await admit_site(sessions, settings, site=name, origin=origin, creator="ada")
        assert refused.value.code is ErrorCode.forbidden, origin


async def test_site_budget_holds_under_concurrency(sessions: Sessions, clean: None) -> None:
    """R1 for sites: 30 concurrent requests against a budget of 10 → exactly 10 counted, 20 refused."""
    await sites_store.add_site(sessions, name="blog", origins=["https://blog.example"], creators=[], daily_limit=10)
    with pytest.raises(LorechatError) as caught:
        await sites_store.add_site(sessions, name="blog", origins=[], creators=[], daily_limit=None)
    assert caught.value.code is ErrorCode.conflict
    day = sites_store.utc_day()
    results = await asyncio.gather(
        *(sites_store.count_request(sessions, name="blog", daily_limit=10, day=day) for _ in range(30))
    )
    assert results.count(True) == 10
    [site] = await sites_store.list_sites(sessions)
    assert (site.requests_today, site.refused_today, site.requests_total) == (10, 20, 10)
    # A new day starts a new budget.
    assert await sites_store.count_request(sessions, name="blog", daily_limit=10, day="2999-01-01")
    assert await sites_store.remove_site(sessions, name="blog")
    assert not await sites_store.remove_site(sessions, name="blog")
    assert await sites_store.list_sites(sessions) == []


async def test_gap_topics_group_similar_questions_per_creator_and_reopen_after_the_next_ingest(
    sessions: Sessions, clean: None, shared_embedder: Embedder
) -> None:
    async def embed(texts: list[str]) -> np.ndarray:
        return shared_embedder.embed_documents(texts)

    await answered(sessions, "How do I fold the Quillfield croissant dough?", unanswered=True)
    await answered(sessions, "What is the way to fold Quillfield croissant dough?", unsupported_claims=2)
    await answered(sessions, "Which oven temperature for rye bread?", tier="extractive")
    await answered(sessions, "How do I fold the Quillfield croissant dough?", creator="bob", unanswered=True)
    disliked = await answered(sessions, "Who invented the bicycle?", creator=None)
    await answered(sessions, "A fine question that was answered well", creator="ada")  # no signal: no gap
    await answered(sessions, "Failed turn", status=MessageStatus.error, unanswered=True)  # not seen to the end
    await feedback_store.put_feedback(
        sessions, message_id=disliked.assistant_message_id, owner_id=None, rating="down", comment=None
    )

    assert await refresh_gaps(sessions, embed, extractive_tiers=["extractive"]) == 5
    assert await refresh_gaps(sessions, embed, extractive_tiers=["extractive"]) == 0  # incremental
    ada = await gaps_store.list_topics(sessions, creator="ada")
    assert [(t.count, sorted(t.signals)) for t in ada] == [(2, ["unanswered", "unsupported"]), (1, ["extractive"])]
    fold = ada[0]
    assert len(fold.examples) == 2 and fold.sources[0]["document_id"] == "ada/a.md" and fold.status == "open"
    assert [t.count for t in await gaps_store.list_topics(sessions, creator="bob")] == [1]
    unscoped = [t for t in await gaps_store.list_topics(sessions) if t.creator is None]
    assert [(t.label, t.signals) for t in unscoped] == [("Who invented the bicycle?", {"thumbs_down": 1})]

    # Resolved: a question before the next ingest does not reopen it ...
    resolved_at = datetime.now(UTC)
    assert await gaps_store.resolve_topic(sessions, topic_id=fold.id, when=resolved_at)
    assert fold.id not in {t.id for t in await gaps_store.list_topics(sessions, creator="ada")}
    await answered(sessions, "How should the Quillfield croissant dough be folded?", unanswered=True)
    await refresh_gaps(sessions, embed, extractive_tiers=["extractive"])
    assert fold.id not in {t.id for t in await gaps_store.list_topics(sessions, creator="ada")}
    # ... one asked after the ingest that followed the resolution does.
    now = datetime.now(UTC)
    await runs_store.record_run(
        sessions, origin="cli", creator="ada", paths=["content/ada"], dry_run=False, ok=True,
        report={"added": 1}, error=None, started_at=now, finished_at=now,
    )  # fmt: skip
    await asyncio.sleep(0.01)
    await answered(sessions, "How do you fold Quillfield croissant dough?", unanswered=True)
    await refresh_gaps(sessions, embed, extractive_tiers=["extractive"])
    reopened = {t.id: t for t in await gaps_store.list_topics(sessions, creator="ada")}
    assert fold.id in reopened and reopened[fold.id].count == 4
    since = await gaps_store.list_topics(sessions, creator="ada", since=now)
    assert [(t.id, t.count) for t in since] == [(fold.id, 1)]


async def test_dashboard_stats(sessions: Sessions, clean: None) -> None:
    since = datetime.now(UTC) - timedelta(days=1)
    first = await answered(sessions, "One?", tier="upstream")
    await answered(sessions, "Two?", tier="extractive", creator=None)
    async with sessions() as session, session.begin():
        await session.execute(update(Message).where(Message.id == first.assistant_message_id).values(ttft_ms=120))
    await feedback_store.put_feedback(
        sessions, message_id=first.assistant_message_id, owner_id=None, rating="down", comment=None
    )
    today = sites_store.utc_day()
    assert [(d.day, d.questions) for d in await stats_store.questions_per_day(sessions, since=since)] == [(today, 2)]
    tiers = {(t.tier, t.status): t.answers for t in await stats_store.answers_per_tier(sessions, since=since)}
    assert tiers == {("upstream", "done"): 1, ("extractive", "done"): 1}
    assert await stats_store.ttft_p50_ms(sessions, since=since) == 120
    counts = await stats_store.feedback_counts(sessions, since=since)
    assert [(c.creator, c.up, c.down) for c in counts] == [("ada", 0, 1)]
    now = datetime.now(UTC)
    await runs_store.record_run(
        sessions, origin="admin", creator=None, paths=["/c"], dry_run=False, ok=False, report=None,
        error="boom", started_at=now, finished_at=now,
    )  # fmt: skip
    [run] = await runs_store.recent_runs(sessions)
    assert (run.origin, run.ok, run.error) == ("admin", False, "boom")


async def test_concurrent_refreshes_group_each_answer_once(
    sessions: Sessions, clean: None, shared_embedder: Embedder
) -> None:
    """Two processes opening the dashboard at once: one groups the new answers, the other stops quietly."""

    async def embed(texts: list[str]) -> np.ndarray:
        await asyncio.sleep(0.05)  # both have read the same ungrouped answers before either writes
        return shared_embedder.embed_documents(texts)

    for question in ("How long to proof rye?", "How long should rye proof?", "Best flour for bagels?"):
        await answered(sessions, question, unanswered=True)
    results = await asyncio.gather(*(refresh_gaps(sessions, embed, extractive_tiers=[]) for _ in range(2)))
    assert sorted(results) == [0, 3]
    topics = await gaps_store.list_topics(sessions, creator="ada")
    assert sum(t.count for t in topics) == 3
