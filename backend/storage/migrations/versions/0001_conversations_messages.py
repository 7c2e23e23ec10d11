"""Conversations and messages.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the schema at this revision (plain types, not the model classes).
_STREAMING = sa.text("status = 'streaming'")


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner_id", sa.String(255), nullable=True),
        sa.Column("creator", sa.String(255), nullable=True),
        sa.Column("title", sa.String(240), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_conversations_owner_updated", "conversations", ["owner_id", "updated_at", "id"])
    op.create_table(
        "messages",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "conversation_id",
            sa.String(64),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cascade_tier", sa.String(64), nullable=True),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("usage", sa.JSON(), nullable=True),
        sa.Column("search_query", sa.Text(), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
        sa.CheckConstraint("role IN ('user', 'assistant')", name="ck_messages_role"),
        sa.CheckConstraint(
            "status IN ('done', 'streaming', 'error', 'interrupted', 'stopped')", name="ck_messages_status"
        ),
    )
    op.create_index(
        "uq_messages_one_streaming",
        "messages",
        ["conversation_id"],
        unique=True,
        postgresql_where=_STREAMING,
        sqlite_where=_STREAMING,
    )
    op.create_index(
        "ix_messages_streaming_created",
        "messages",
        ["created_at"],
        postgresql_where=_STREAMING,
        sqlite_where=_STREAMING,
    )


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_table("conversations")
