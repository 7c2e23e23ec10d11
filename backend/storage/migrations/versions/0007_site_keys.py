"""Site keys: each embedding site may hold one key (its SHA-256, never the key) for agents calling the MCP server
as that site (`lorechat sites key NAME`).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the schema at this revision (plain types, not the model classes).


def upgrade() -> None:
    # Nullable: a site has no key until one is made for it.
    op.add_column("sites", sa.Column("key_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("key_hash")
