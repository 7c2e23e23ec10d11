"""The service's SQL tables (SQLAlchemy 2 typed declarative): conversations and messages, the curator loop's
(feedback, sites and their usage, gap topics, ingest runs), the content catalog and creator channels."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from backend.ids import ID_PATTERN as ID_PATTERN
from backend.ids import is_valid_id as is_valid_id
from backend.ids import new_id as new_id
from backend.storage.records import MessageStatus

ROLES = ("user", "assistant")
MESSAGE_STATUSES = tuple(status.value for status in MessageStatus)
TITLE_CHARS = 120


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Always timezone-aware UTC in Python. SQLite has no time zones, so it stores naive UTC there."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        # Naive on SQLite so stored strings share one fixed-width format and compare in time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    # JWT subject; None means anonymous (reachable only by whoever holds the unguessable id).
    owner_id: Mapped[str | None] = mapped_column(String(255))
    creator: Mapped[str | None] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(TITLE_CHARS * 2), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_conversations_owner_updated", "owner_id", "updated_at", "id"),)


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))
    cascade_tier: Mapped[str | None] = mapped_column(String(64))
    sources: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    search_query: Mapped[str] = mapped_column(Text, default="")
    error_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # While "streaming": the process that streams it, and until when it vouches for it (renewed while it
    # lives). A lapsed lease means that process died: the answer is finished as interrupted (INV-1, F13).
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The claim check (issue 12): per answer sentence its span, cited sources, supporting quote, supported.
    citations: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    unsupported_claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Retrieval confidence was below the threshold: the answer said the sources do not cover the question.
    unanswered: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Milliseconds from the request to the first answer token (issue 13's dashboard: TTFT p50); None if untimed.
    ttft_ms: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        # Orders messages inside a conversation, and makes two racing turns collide instead of interleave.
        UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
        CheckConstraint("role IN ('user', 'assistant')", name="ck_messages_role"),
        CheckConstraint(
            "status IN ({})".format(", ".join(f"'{status}'" for status in MESSAGE_STATUSES)), name="ck_messages_status"
        ),
        # D4: at most one answer streaming per conversation, enforced by the database itself.
        Index(
            "uq_messages_one_streaming",
            "conversation_id",
            unique=True,
            postgresql_where=text("status = 'streaming'"),
            sqlite_where=text("status = 'streaming'"),
        ),
        # The reaper looks for old streaming rows only ...
        Index(
            "ix_messages_streaming_created",
            "created_at",
            postgresql_where=text("status = 'streaming'"),
            sqlite_where=text("status = 'streaming'"),
        ),
        # ... and for streaming rows whose lease lapsed.
        Index(
            "ix_messages_streaming_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'streaming'"),
            sqlite_where=text("status = 'streaming'"),
        ),
    )


# ---- the curator loop (issue 13): feedback, sites, gap topics, ingest runs ---------------------------------
# The dashboard's per-day and per-tier counts read a time window of one role; status and tier ride along so the
# per-tier count never touches the table (4× faster at 100k turns on SQLite: scripts/bench/curator).
Index("ix_messages_role_created", Message.role, Message.created_at, Message.status, Message.cascade_tier)

FEEDBACK_RATINGS = ("up", "down")


class Feedback(Base):
    """A visitor's 👍/👎 on one answer; one per message, a change replaces it."""

    __tablename__ = "feedback"

    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    rating: Mapped[str] = mapped_column(String(8))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint("rating IN ('up', 'down')", name="ck_feedback_rating"),
        Index("ix_feedback_rating_updated", "rating", "updated_at"),
    )


class Site(Base):
    """A site that embeds the widget: the origins it may be used from, its creators and its daily budget."""

    __tablename__ = "sites"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    origins: Mapped[list[str]] = mapped_column(JSON)
    # Empty: every creator.
    creators: Mapped[list[str]] = mapped_column(JSON)
    # None: no budget of its own (the per-IP and per-creator limits still apply).
    daily_limit: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The SHA-256 (hex) of the site's key for agents (the MCP server); None: no key. The key itself is shown once.
    key_hash: Mapped[str | None] = mapped_column(String(64), default=None)


class SiteUsage(Base):
    """Chat requests per site and UTC day: accepted ones (counted against the budget) and refused ones."""

    __tablename__ = "site_usage"

    site: Mapped[str] = mapped_column(ForeignKey("sites.name", ondelete="CASCADE"), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, UTC
    requests: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    refused: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class GapTopic(Base):
    """Similar questions the content did not answer well, grouped; resolved by a curator, reopened by new ones."""

    __tablename__ = "gap_topics"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    creator: Mapped[str | None] = mapped_column(String(255))  # None: questions asked without a creator
    label: Mapped[str] = mapped_column(Text)
    centroid: Mapped[list[float]] = mapped_column(JSON)
    count: Mapped[int] = mapped_column(Integer)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    examples: Mapped[list[str]] = mapped_column(JSON)
    sources: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # How often each signal was seen: unanswered, unsupported, thumbs_down, extractive.
    signals: Mapped[dict[str, int]] = mapped_column(JSON)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The curated answer written for it, and when: answered topics leave the inbox until a question joins them that
    # the answer did not match (issue 40).
    answered_by: Mapped[str | None] = mapped_column(String(64))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_gap_topics_creator_count", "creator", "count"),)


class GapMember(Base):
    """Which topic an answer's question was grouped into (each answer once, so a refresh is incremental)."""

    __tablename__ = "gap_members"

    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    topic_id: Mapped[str] = mapped_column(ForeignKey("gap_topics.id", ondelete="CASCADE"))
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime())

    # By topic (counts since a date); by time (a refresh starts at the newest grouped question).
    __table_args__ = (Index("ix_gap_members_topic", "topic_id"), Index("ix_gap_members_asked", "asked_at"))


INGEST_ORIGINS = ("cli", "admin", "channel")


class IngestRun(Base):
    """One `lorechat ingest` (CLI or the admin route) and its report."""

    __tablename__ = "ingest_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    origin: Mapped[str] = mapped_column(String(16))
    creator: Mapped[str | None] = mapped_column(String(255))
    paths: Mapped[list[str]] = mapped_column(JSON)
    dry_run: Mapped[bool] = mapped_column(Boolean)
    ok: Mapped[bool] = mapped_column(Boolean)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_ingest_runs_finished", "finished_at"),)


# ---- the catalog (issue 14): creators and their documents as last ingested, shared by every replica -------


class CatalogCreatorRow(Base):
    """A creator's profile and voice, as its creator.yaml said at the last ingest."""

    __tablename__ = "catalog_creators"

    slug: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    bio: Mapped[str] = mapped_column(Text)
    personality: Mapped[str] = mapped_column(Text)
    phrases: Mapped[list[str]] = mapped_column(JSON)
    links: Mapped[list[str]] = mapped_column(JSON)


class CatalogDocumentRow(Base):
    """One document of a creator as last ingested (titles and kinds for the site, the API and the prompt)."""

    __tablename__ = "catalog_documents"

    creator: Mapped[str] = mapped_column(
        String(255), ForeignKey("catalog_creators.slug", ondelete="CASCADE"), primary_key=True
    )
    document_id: Mapped[str] = mapped_column(Text, primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    chunks: Mapped[int] = mapped_column(Integer)
    published: Mapped[str | None] = mapped_column(Text)
    duration_seconds: Mapped[float | None] = mapped_column(Float)


class CatalogVersion(Base):
    """One row, bumped in the transaction of every catalog write: replicas poll it to know when to re-read."""

    __tablename__ = "catalog_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


# ---- creator channels (issue 38): feeds, podcasts, sitemaps, sites and video pages synced on an interval ------

CHANNEL_KINDS = ("feed", "podcast", "sitemap", "site", "video")


class Channel(Base):
    """A creator's channel: where its content is read from, when, and how the last sync went."""

    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    creator: Mapped[str] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    interval_seconds: Mapped[int] = mapped_column(Integer)
    max_items: Mapped[int | None] = mapped_column(Integer)
    # Site crawls: clicks from the start page.
    depth: Mapped[int | None] = mapped_column(Integer)
    # Items that vanished from the source stay indexed (a feed is a window of its latest entries).
    keep_missing: Mapped[bool] = mapped_column(Boolean)
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The listing's validators (feed, sitemap), sent back as If-None-Match / If-Modified-Since.
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # ok, partial (some items failed), failed (nothing read); None before the first sync.
    last_status: Mapped[str | None] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(Text)
    # Consecutive failed syncs: the next one backs off.
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    items: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    documents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The sync in progress, if any: never two of one channel at once, on any process sharing the database.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("creator", "url", name="uq_channels_creator_url"),
        Index("ix_channels_next_sync", "next_sync_at"),
    )


class ChannelItem(Base):
    """One item of a channel as last synced: its change token, HTTP validators and the document it became."""

    __tablename__ = "channel_items"

    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True)
    # sha256 of `key` (an entry id, a page URL, a video id), which may be long.
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(Text)
    document_id: Mapped[str] = mapped_column(Text)
    # What the connector needs to fetch it again when the listing answered 304 (URL, title, date, links...).
    item: Mapped[dict[str, Any]] = mapped_column(JSON)
    token: Mapped[str | None] = mapped_column(Text)
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    # The indexed document's content hash; None while it never indexed (its last fetch failed).
    content_hash: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# ---- curated answers (issue 40): a curator's answer served first, its versions and uses; starter questions -------


class CuratedAnswer(Base):
    """A curator's answer to the questions it lists (its phrasings), scoped to one creator or to all."""

    __tablename__ = "curated_answers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    creator: Mapped[str | None] = mapped_column(String(255))  # None: every creator
    version: Mapped[int] = mapped_column(Integer)  # the current one; every edit adds one (curated_answer_versions)
    questions: Mapped[list[str]] = mapped_column(JSON)
    answer: Mapped[str] = mapped_column(Text)
    documents: Mapped[list[str]] = mapped_column(JSON)  # the catalog documents it rests on (its `sources`)
    topic_id: Mapped[str | None] = mapped_column(String(64))  # the gap topic it was written from
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # retired: kept, never served

    __table_args__ = (Index("ix_curated_answers_creator", "creator"),)


class CuratedAnswerVersion(Base):
    """Every version of a curated answer as it was written: an edit keeps the old text for the record."""

    __tablename__ = "curated_answer_versions"

    answer_id: Mapped[str] = mapped_column(ForeignKey("curated_answers.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    questions: Mapped[list[str]] = mapped_column(JSON)
    answer: Mapped[str] = mapped_column(Text)
    documents: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CuratedUse(Base):
    """An answer a curated answer served (its 👍/👎 are the answer's feedback): use counts and ratings per answer."""

    __tablename__ = "curated_uses"

    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    answer_id: Mapped[str] = mapped_column(ForeignKey("curated_answers.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    served_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_curated_uses_answer", "answer_id"),)


class CuratedVersion(Base):
    """One row, bumped in the transaction of every curated answer or starter write: replicas poll it."""

    __tablename__ = "curated_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class StarterQuestions(Base):
    """The starter questions a curator set for a creator and/or a site ("" in either: any)."""

    __tablename__ = "starter_questions"

    creator: Mapped[str] = mapped_column(String(255), primary_key=True)
    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    questions: Mapped[list[str]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
