"""What the claim check found in each answer, and whether the sources covered the question at all.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable / defaulted: answers written before this revision were never checked.
    op.add_column("messages", sa.Column("citations", sa.JSON(), nullable=True))
    op.add_column("messages", sa.Column("unsupported_claims", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("messages", sa.Column("unanswered", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("unanswered")
        batch.drop_column("unsupported_claims")
        batch.drop_column("citations")
