"""`lorechat gaps`: the knowledge-gap inbox, most frequent first; `lorechat gaps resolve ID` marks one done."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

import click

from backend.errors import ErrorCode, LorechatError
from backend.settings import get_settings
from pipeline.terminal import dumps, safe

if TYPE_CHECKING:
    import numpy as np

    from backend.curation.gaps_store import TopicView
    from backend.storage.repository import Sessions


def topic_json(topic: TopicView) -> dict[str, Any]:
    return {
        "id": topic.id,
        "creator": topic.creator,
        "status": topic.status,
        "label": topic.label,
        "count": topic.count,
        "first_seen": topic.first_seen.isoformat(),
        "last_seen": topic.last_seen.isoformat(),
        "examples": topic.examples,
        "sources": topic.sources,
        "signals": topic.signals,
        "resolved_at": topic.resolved_at.isoformat() if topic.resolved_at else None,
        "answered_by": topic.answered_by,
    }


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.combine(date.fromisoformat(value), time.min, tzinfo=UTC)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date like 2026-11-01", param_hint="--since") from exc


@click.group(invoke_without_command=True)
@click.option("--creator", metavar="SLUG", help="Only this creator's gaps.")
@click.option("--since", metavar="DATE", help="Only questions asked since DATE (YYYY-MM-DD, UTC), counted since then.")
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved topics.")
@click.option("--json", "as_json", is_flag=True, help="Print the topics as a JSON array.")
@click.pass_context
def gaps(ctx: click.Context, creator: str | None, since: str | None, include_resolved: bool, as_json: bool) -> None:
    """Questions the content did not answer well, grouped into topics, most frequent first.

    A gap is an answer that said the sources do not cover the question, made unsupported claims, got a 👎,
    or came from the extractive tier because no model answered. Similar questions of one creator form one
    topic; new answers are grouped each time this runs (or the dashboard opens).
    """
    if ctx.invoked_subcommand is not None:
        return
    from backend.curation import gaps_store
    from backend.curation.gaps import extractive_tier_names, refresh_gaps
    from backend.retrieval.embedder import get_embedder
    from pipeline.curator_db import with_sessions

    start = _since(since)
    settings = get_settings()

    embedder = get_embedder(settings.embedding)

    async def embed(texts: list[str]) -> np.ndarray:
        return embedder.embed_documents(texts)

    async def work(sessions: Sessions) -> list[TopicView]:
        await refresh_gaps(sessions, embed, extractive_tiers=extractive_tier_names(settings))
        return await gaps_store.list_topics(sessions, creator=creator, since=start, include_resolved=include_resolved)

    topics = with_sessions(settings, work)
    if as_json:
        click.echo(dumps([topic_json(topic) for topic in topics]))
        return
    if not topics:
        click.echo("No open knowledge gaps.", err=True)
    for topic in topics:
        # Labels are visitors' questions and titles come from content: each field is printed inert (C1).
        who = topic.creator or "(no creator)"
        signals = ", ".join(f"{name} {n}" for name, n in sorted(topic.signals.items()))
        click.echo(
            f"{safe(topic.id)}  {safe(who)}  ×{topic.count}  {safe(topic.status)}  last {topic.last_seen:%Y-%m-%d}"
            f"  [{safe(signals)}]"
        )
        click.echo(f"    {safe(topic.label)}")
        for source in topic.sources:
            click.echo(f"    source: {safe(source.get('title') or source.get('document_id'))}")


@gaps.command("resolve")
@click.argument("topic_id", metavar="ID")
def resolve(topic_id: str) -> None:
    """Mark gap topic ID resolved; it reopens if visitors keep asking after the next ingest."""
    from backend.curation import gaps_store
    from backend.ids import require_id
    from pipeline.curator_db import with_sessions

    topic_id = require_id(topic_id, what="gap topic")  # the id gate: a malformed id is never looked up
    done = with_sessions(
        get_settings(),
        lambda sessions: gaps_store.resolve_topic(sessions, topic_id=topic_id, when=datetime.now(UTC)),
    )
    if not done:
        raise LorechatError(ErrorCode.not_found, f"no gap topic '{topic_id}'")
    click.echo(f"Resolved {topic_id}; it reopens if the question keeps coming after the next ingest.", err=True)
