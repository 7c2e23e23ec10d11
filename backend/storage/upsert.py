"""INSERT … ON CONFLICT DO UPDATE for both databases (SQLite ≥ 3.35 and PostgreSQL share the syntax)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def upsert(
    session: AsyncSession,
    model: type[Any],
    *,
    values: dict[str, Any],
    keys: list[str],
    update: dict[str, Any],
    where: ColumnElement[bool] | None = None,
) -> Any:
    """One atomic statement on `model`'s table: insert `values`, or on a key conflict apply `update` (only
    where `where` holds).

    Atomic in the database itself, so several API processes counting into one row never lose an increment.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert(model) if dialect == "postgresql" else sqlite.insert(model)
    return insert.values(**values).on_conflict_do_update(index_elements=keys, set_=update, where=where)
