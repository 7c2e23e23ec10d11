"""Engines, migrations and database outages, on real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.errors import ErrorCode, LorechatError
from backend.storage import db as db_module
from backend.storage import repository as repo
from backend.storage.db import alembic_config, create_engine, migrate, ping, session_factory
from backend.storage.models import Base
from tests.backend.storage.conftest import settings_for
from tests.backend.storage.services import PG_URL, closed_port
from tests.databases import throwaway_database

pytestmark = pytest.mark.services


def _schema_state(connection: Connection) -> tuple[str | None, list[object]]:
    context = MigrationContext.configure(connection)
    return context.get_current_revision(), compare_metadata(context, Base.metadata)


async def test_migrations_are_at_head_idempotent_and_match_the_models(engine: AsyncEngine) -> None:
    await migrate(engine)  # a second upgrade is a no-op
    async with engine.connect() as connection:
        revision, diff = await connection.run_sync(_schema_state)
    assert revision == ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert diff == []
    assert await ping(engine)


async def test_sqlite_engine_creates_its_directory_and_sets_pragmas(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "chat.db"
    engine = create_engine(settings_for(f"sqlite+aiosqlite:///{target}", tmp_path))
    try:
        await migrate(engine)
        assert target.is_file()
        async with engine.connect() as connection:
            assert await connection.scalar(text("PRAGMA journal_mode")) == "wal"
            assert await connection.scalar(text("PRAGMA foreign_keys")) == 1
            assert await connection.scalar(text("PRAGMA busy_timeout")) == 5000
    finally:
        await engine.dispose()


async def test_default_url_is_sqlite_under_data_dir(tmp_path: Path) -> None:
    settings = settings_for("", tmp_path / "data")
    engine = create_engine(settings)
    try:
        await migrate(engine)
        assert (tmp_path / "data" / "lorechat.db").is_file()
    finally:
        await engine.dispose()


async def test_postgresql_engine_sets_statement_timeout(postgresql_url: str, tmp_path: Path) -> None:
    engine = create_engine(settings_for(postgresql_url, tmp_path, statement_timeout_seconds=0.5))
    sessions = session_factory(engine)
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("SHOW statement_timeout")) == "500ms"
        # A runaway statement is cancelled by the server and reported as retryable, not as a 500.
        with pytest.raises(LorechatError) as caught:
            async with repo.db_errors(), sessions() as session:
                await session.execute(text("SELECT pg_sleep(3)"))
        assert caught.value.code is ErrorCode.database_unavailable
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def test_database_down_is_a_retryable_503(tmp_path: Path) -> None:
    """F4: nothing listening → database_unavailable quickly; ping says not ready."""
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/nothing"
    engine = create_engine(settings_for(url, tmp_path, pool_timeout_seconds=1))
    sessions = session_factory(engine)
    try:
        started = time.monotonic()
        with pytest.raises(LorechatError) as caught:
            await repo.start_turn(sessions, conversation_id=None, owner_id=None, creator=None, question="hi")
        assert caught.value.code is ErrorCode.database_unavailable and caught.value.retryable
        assert caught.value.status == 503 and "127.0.0.1" not in caught.value.message
        with pytest.raises(LorechatError):
            await repo.list_conversations(sessions, owner_id="a", limit=5, cursor=None)
        assert not await ping(engine)
        assert time.monotonic() - started < 5
    finally:
        await engine.dispose()


async def test_exhausted_pool_is_a_retryable_503(postgresql_url: str, tmp_path: Path) -> None:
    engine = create_engine(settings_for(postgresql_url, tmp_path, pool_size=1, pool_timeout_seconds=0.2))
    sessions = session_factory(engine)
    try:
        async with engine.connect() as held:
            await held.execute(text("SELECT 1"))
            with pytest.raises(LorechatError) as caught:
                await repo.list_conversations(sessions, owner_id="a", limit=5, cursor=None)
            assert caught.value.code is ErrorCode.database_unavailable
        assert (await repo.list_conversations(sessions, owner_id="a", limit=5, cursor=None)).items == []
    finally:
        await engine.dispose()


async def test_pooled_connections_are_pinged_only_after_sitting_idle(
    postgresql_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection back in the pool for under `_PING_AFTER_IDLE_SECONDS` is used without a ping (a round trip a
    transaction saved), an idle one is pinged first, and one the server closed is replaced unseen either way."""
    engine = create_engine(settings_for(postgresql_url, tmp_path, pool_size=1))
    killer = create_engine(settings_for(postgresql_url, tmp_path))
    pings: list[object] = []
    dialect = engine.sync_engine.dialect
    ping_once = dialect.do_ping

    def counted(dbapi_connection: object) -> bool:
        pings.append(dbapi_connection)
        return ping_once(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counted)

    async def backend_pid() -> int:
        async with engine.connect() as connection:
            return int(await connection.scalar(text("SELECT pg_backend_pid()")))

    async def kill(pid: int) -> None:
        async with killer.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    try:
        first = await backend_pid()
        assert await backend_pid() == first and pings == []  # fresh, then back in the pool for milliseconds

        monkeypatch.setattr(db_module, "_PING_AFTER_IDLE_SECONDS", 0.05)
        await asyncio.sleep(0.1)
        assert await backend_pid() == first and len(pings) == 1  # idle: pinged, alive, used

        # Terminated since: the server's close has reached us, so it is replaced unseen, idle or not.
        await kill(first)
        await asyncio.sleep(0.1)
        second = await backend_pid()
        assert second != first
        monkeypatch.setattr(db_module, "_PING_AFTER_IDLE_SECONDS", 60.0)
        await kill(second)
        await asyncio.sleep(0.05)
        third = await backend_pid()
        assert third not in (first, second) and len(pings) == 1
    finally:
        await engine.dispose()
        await killer.dispose()


def test_unsupported_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        create_engine(settings_for("mysql+aiomysql://u@h/db", tmp_path))


@pytest.fixture
def empty_postgresql() -> Iterator[str]:
    with throwaway_database(PG_URL, prefix="lorechat_migrate") as url:
        yield url


async def test_replicas_starting_together_on_a_fresh_postgresql_all_migrate(
    empty_postgresql: str, tmp_path: Path
) -> None:
    """Three processes' engines migrate one empty database at once: one creates the schema, the others wait for
    it (advisory lock) and find it at head; none fails to start."""
    engines = [create_engine(settings_for(empty_postgresql, tmp_path / str(i))) for i in range(3)]
    try:
        await asyncio.gather(*(migrate(engine) for engine in engines))
        async with engines[0].connect() as connection:
            revision, diff = await connection.run_sync(_schema_state)
        assert revision == ScriptDirectory.from_config(alembic_config()).get_current_head() and diff == []
    finally:
        for engine in engines:
            await engine.dispose()
