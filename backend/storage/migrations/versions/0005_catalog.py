"""The catalog in SQL: creators, their documents and a version counter, so every replica sharing the database
sees an ingest at once (it was <data_dir>/catalog.json, visible only on the host that ingested).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the schema at this revision (plain types, not the model classes).


def upgrade() -> None:
    op.create_table(
        "catalog_creators",
        sa.Column("slug", sa.String(255), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("bio", sa.Text(), nullable=False),
        sa.Column("personality", sa.Text(), nullable=False),
        sa.Column("phrases", sa.JSON(), nullable=False),
        sa.Column("links", sa.JSON(), nullable=False),
    )
    op.create_table(
        "catalog_documents",
        sa.Column(
            "creator", sa.String(255), sa.ForeignKey("catalog_creators.slug", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("document_id", sa.Text(), primary_key=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("published", sa.Text(), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
    )
    version = op.create_table(
        "catalog_version",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    # The one row every catalog write bumps; 0 means "never written" (the legacy catalog.json may be imported).
    op.bulk_insert(version, [{"id": 1, "version": 0}])


def downgrade() -> None:
    op.drop_table("catalog_version")
    op.drop_table("catalog_documents")
    op.drop_table("catalog_creators")
