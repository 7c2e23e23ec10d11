"""Database engine, sessions and migrations: SQLite (aiosqlite, WAL) or PostgreSQL (asyncpg)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from backend.settings import Settings

log = logging.getLogger(__name__)

STORAGE_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = STORAGE_DIR / "alembic.ini"
MIGRATIONS_DIR = STORAGE_DIR / "migrations"


def create_engine(settings: Settings) -> AsyncEngine:
    """An engine for settings.database_url, tuned per backend; the SQLite parent directory is created."""
    url = make_url(settings.database_url)
    db = settings.database
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        busy_ms = int(db.statement_timeout_seconds * 1000)
        # One connection, so one writer: SQLite has a single write lock, and connections racing for it fail
        # with "database is locked" under a spike (a deferred transaction that read first cannot wait for
        # it). The pool's queue is an asyncio queue, so turns wait their turn fairly in the event loop, each
        # holding the connection for one short transaction; `sqlite_queue_seconds` bounds the wait.
        engine = create_async_engine(
            url,
            pool_size=1,
            max_overflow=0,
            pool_timeout=db.sqlite_queue_seconds,
            # sqlite3's own busy timeout, in seconds; the PRAGMA below sets the same for every connection.
            connect_args={"timeout": db.statement_timeout_seconds},
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(busy_ms))
        return engine
    if url.get_backend_name() == "postgresql":
        server_settings = {
            "statement_timeout": str(int(db.statement_timeout_seconds * 1000)),
            # A crashed request must not pin a connection inside an open transaction (INV-4).
            "idle_in_transaction_session_timeout": str(int(max(db.statement_timeout_seconds, 1) * 6000)),
            "application_name": "lorechat",
        }
        engine = create_async_engine(
            url,
            pool_size=db.pool_size,
            max_overflow=0,
            pool_timeout=db.pool_timeout_seconds,
            # A database that does not answer fails fast; a busy pool is waited for (a spike queues).
            connect_args={"timeout": min(db.pool_timeout_seconds, 5.0), "server_settings": server_settings},
        )
        _ping_idle_connections(engine)
        return engine
    raise ValueError(f"unsupported database URL scheme {url.drivername!r} (use sqlite+aiosqlite or postgresql+asyncpg)")


# A pooled connection idle longer than this is pinged before use; one back in the pool for less is used as is.
_PING_AFTER_IDLE_SECONDS = 1.0
_LAST_USED = "lorechat_last_used"  # the key in a pooled connection's info: when it last came back to the pool


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """`pool_pre_ping`, for connections that sat idle: pinging every checkout cost a round trip per transaction
    (two a turn). Every checkout still drops a connection whose close the server already sent (a restart, a
    terminated backend); one used within the last second that broke silently since fails its statement instead,
    as one in use when the database went away does, and that disconnect error invalidates every older connection
    in the pool (SQLAlchemy's pool invalidation), so the next checkout reconnects."""
    dialect = engine.sync_engine.dialect

    def mark_fresh(_dbapi_connection: Any, record: Any, *_: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    def ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # A connection the server closed (a restart, a terminated backend) has seen its socket end: asyncpg marks
        # it closed, and the pool replaces it unseen, without a round trip.
        if record.driver_connection is not None and record.driver_connection.is_closed():
            raise DisconnectionError("the database closed this connection")
        if time.monotonic() - record.info.get(_LAST_USED, 0.0) <= _PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                # The pool discards this connection and checks out a fresh one (up to three tries).
                raise DisconnectionError(str(exc)) from exc
            raise

    event.listen(engine.sync_engine, "connect", mark_fresh)
    event.listen(engine.sync_engine, "checkin", mark_fresh)
    event.listen(engine.sync_engine, "checkout", ping_if_idle)


def _sqlite_pragmas(busy_ms: int) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers run while one writer commits; busy_timeout makes writers queue, not fail.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return on_connect


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration pointing at the packaged migrations; `connection` is used when given."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


# Any constant shared by every lorechat process: "lorechat" as the bytes of a 64-bit integer.
_MIGRATION_LOCK = int.from_bytes(b"lorechat", "big") - (1 << 63)


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the latest revision (Alembic `upgrade head`) on a connection of this engine.

    Replicas starting together on one PostgreSQL migrate one at a time: a transaction-scoped advisory lock
    serialises them, and the later ones find the schema at head (without it they race to create the same
    tables and all but one fail to start)."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        await connection.run_sync(_upgrade)
    log.info("database schema is at head")


async def ping(engine: AsyncEngine) -> bool:
    """True when the database answers `SELECT 1`; never raises (for /readyz)."""
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True
    except Exception as exc:  # any failure means "not ready"; the reason is logged, not returned
        log.warning("database ping failed: %s", type(exc).__name__)
        return False
