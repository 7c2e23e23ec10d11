"""Real databases for storage tests: a throwaway PostgreSQL database and SQLite file per test session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.settings import Settings
from backend.storage.db import create_engine, migrate, session_factory
from tests.backend.storage.services import PG_URL
from tests.databases import throwaway_database

BACKENDS = ("sqlite", "postgresql")


def settings_for(url: str, tmp: Path, **database: object) -> Settings:
    return Settings(data_dir=tmp, database={"url": url, **database}, redis={"url": ""})


async def _migrate(url: str, tmp: Path) -> None:
    engine = create_engine(settings_for(url, tmp))
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgresql_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A uniquely named, migrated database, dropped at the end, so parallel runs never share tables.

    No skip when PostgreSQL is missing: the error is the test result (CI must fail).
    """
    with throwaway_database(PG_URL, prefix="lorechat_test") as url:
        asyncio.run(_migrate(url, tmp_path_factory.mktemp("pg")))
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("sqlite")
    # A nested, not yet existing directory: create_engine must make it.
    url = f"sqlite+aiosqlite:///{tmp / 'nested' / 'lorechat.db'}"
    asyncio.run(_migrate(url, tmp))
    return url


async def assert_no_leaks(engine: AsyncEngine) -> None:
    """INV-4: nothing checked out of the pool, and (PostgreSQL) no session idle inside a transaction."""
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    if engine.dialect.name == "postgresql":
        async with engine.connect() as connection:
            idle_in_tx = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                )
            )
        assert idle_in_tx == 0


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    # Resolved in a plain fixture: the session fixtures run their own event loop, which cannot nest.
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
async def engine(database_url: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on an emptied, migrated database of each backend; checked for leaks afterwards."""
    engine = create_engine(settings_for(database_url, tmp_path))
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM messages"))
        await connection.execute(text("DELETE FROM conversations"))
    try:
        yield engine
        await assert_no_leaks(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)
