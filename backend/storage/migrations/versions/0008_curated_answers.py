"""Curated answers: a curator's answer with the questions it answers, versioned, and each use of it; starter
questions per creator and site; the gap topic an answer was written for (issue 40).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the schema at this revision (plain types, not the model classes).


def upgrade() -> None:
    op.create_table(
        "curated_answers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("creator", sa.String(255), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("questions", sa.JSON(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("documents", sa.JSON(), nullable=False),
        sa.Column("topic_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_curated_answers_creator", "curated_answers", ["creator"])
    op.create_table(
        "curated_answer_versions",
        sa.Column(
            "answer_id", sa.String(64), sa.ForeignKey("curated_answers.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("questions", sa.JSON(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("documents", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "curated_uses",
        sa.Column("message_id", sa.String(64), sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("answer_id", sa.String(64), sa.ForeignKey("curated_answers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("served_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_curated_uses_answer", "curated_uses", ["answer_id"])
    version = op.create_table(
        "curated_version",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.bulk_insert(version, [{"id": 1, "version": 0}])
    op.create_table(
        "starter_questions",
        sa.Column("creator", sa.String(255), primary_key=True),
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("questions", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Nullable: topics from before this revision were never answered this way.
    with op.batch_alter_table("gap_topics") as table:
        table.add_column(sa.Column("answered_by", sa.String(64), nullable=True))
        table.add_column(sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gap_topics") as table:
        table.drop_column("answered_at")
        table.drop_column("answered_by")
    op.drop_table("starter_questions")
    op.drop_table("curated_version")
    op.drop_table("curated_uses")
    op.drop_table("curated_answer_versions")
    op.drop_table("curated_answers")
