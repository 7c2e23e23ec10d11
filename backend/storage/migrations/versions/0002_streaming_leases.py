"""Leases on streaming answers: which process streams each one, and until when it vouches for it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the schema at this revision (plain types, not the model classes).
_STREAMING = sa.text("status = 'streaming'")


def upgrade() -> None:
    # Nullable: rows written before this revision (and finished rows) carry no lease; the reaper treats a
    # streaming row without one by its age (server.reaper_seconds), as before.
    op.add_column("messages", sa.Column("lease_owner", sa.String(64), nullable=True))
    op.add_column("messages", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_messages_streaming_lease",
        "messages",
        ["lease_expires_at"],
        postgresql_where=_STREAMING,
        sqlite_where=_STREAMING,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_streaming_lease", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_owner")
