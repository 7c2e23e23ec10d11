"""Alembic environment: uses the connection handed over by db.migrate, else builds one from settings."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from backend.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode recreates tables when a later revision needs it.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_settings() -> None:
    # Imported here so the programmatic path never builds settings it was not asked for.
    from backend.settings import get_settings
    from backend.storage.db import create_engine

    engine = create_engine(get_settings())
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    if context.is_offline_mode():
        raise SystemExit("offline (--sql) migrations are not supported; run against a database")
    # Command-line use only: the service's own logging is left alone when it migrates itself.
    if config.config_file_name:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    asyncio.run(_run_from_settings())


main()
