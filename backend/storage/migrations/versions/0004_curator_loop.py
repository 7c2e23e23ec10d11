"""The curator loop: feedback on answers, embedding sites and their daily usage, knowledge-gap topics,
ingest runs, and the time to first token of each answer.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the schema at this revision (plain types, not the model classes).


def upgrade() -> None:
    # Nullable: answers written before this revision were not timed.
    op.add_column("messages", sa.Column("ttft_ms", sa.Integer(), nullable=True))
    # The dashboard's per-day and per-tier counts read a time window of one role.
    op.create_index("ix_messages_role_created", "messages", ["role", "created_at", "status", "cascade_tier"])
    op.create_table(
        "feedback",
        sa.Column("message_id", sa.String(64), sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("rating", sa.String(8), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("rating IN ('up', 'down')", name="ck_feedback_rating"),
    )
    op.create_index("ix_feedback_rating_updated", "feedback", ["rating", "updated_at"])
    op.create_table(
        "sites",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("origins", sa.JSON(), nullable=False),
        sa.Column("creators", sa.JSON(), nullable=False),
        sa.Column("daily_limit", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "site_usage",
        sa.Column("site", sa.String(64), sa.ForeignKey("sites.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("requests", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("refused", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_table(
        "gap_topics",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("creator", sa.String(255), nullable=True),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("centroid", sa.JSON(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("examples", sa.JSON(), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("signals", sa.JSON(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_gap_topics_creator_count", "gap_topics", ["creator", "count"])
    op.create_table(
        "gap_members",
        sa.Column("message_id", sa.String(64), sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("topic_id", sa.String(64), sa.ForeignKey("gap_topics.id", ondelete="CASCADE"), nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_gap_members_topic", "gap_members", ["topic_id"])
    op.create_index("ix_gap_members_asked", "gap_members", ["asked_at"])
    op.create_table(
        "ingest_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("creator", sa.String(255), nullable=True),
        sa.Column("paths", sa.JSON(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ingest_runs_finished", "ingest_runs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_ingest_runs_finished", table_name="ingest_runs")
    op.drop_table("ingest_runs")
    op.drop_index("ix_gap_members_asked", table_name="gap_members")
    op.drop_index("ix_gap_members_topic", table_name="gap_members")
    op.drop_table("gap_members")
    op.drop_index("ix_gap_topics_creator_count", table_name="gap_topics")
    op.drop_table("gap_topics")
    op.drop_table("site_usage")
    op.drop_table("sites")
    op.drop_index("ix_feedback_rating_updated", table_name="feedback")
    op.drop_table("feedback")
    op.drop_index("ix_messages_role_created", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("ttft_ms")
