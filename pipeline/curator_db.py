"""The service's database for curator commands (sites, gaps, ingest runs): migrated, used, disposed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from backend.settings import Settings
from backend.storage.db import create_engine, migrate, session_factory
from backend.storage.repository import Sessions

T = TypeVar("T")


def with_sessions(settings: Settings, work: Callable[[Sessions], Awaitable[T]]) -> T:
    """Run `work` against the configured database (SQLite under the data dir by default, or PostgreSQL),
    bringing its schema to head first, as `lorechat serve` does."""

    async def run() -> T:
        engine = create_engine(settings)
        try:
            await migrate(engine)
            return await work(session_factory(engine))
        finally:
            await engine.dispose()

    return anyio.run(run)
