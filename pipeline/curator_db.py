"""The service's database for the pipeline's synchronous code (catalog writes, sites, gaps, ingest runs).

Two ways to reach it: `OwnEngine` opens, migrates and disposes an engine of its own per call (the CLI), and
`ServiceLoop` runs the work on the service's event loop with the service's sessions (an ingest the admin
route runs in a worker thread, so it shares the service's connection pool instead of opening another).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import anyio
import anyio.from_thread

from backend.settings import Settings
from backend.storage.db import create_engine, migrate, session_factory
from backend.storage.repository import Sessions, db_errors

T = TypeVar("T")


class Database(Protocol):
    def run(self, work: Callable[[Sessions], Awaitable[T]]) -> T:
        """Await `work(sessions)` and return its result, from synchronous code."""
        ...


@dataclass(frozen=True, slots=True)
class OwnEngine:
    settings: Settings

    def run(self, work: Callable[[Sessions], Awaitable[T]]) -> T:
        return with_sessions(self.settings, work)


@dataclass(frozen=True, slots=True)
class ServiceLoop:
    """Only from a worker thread the service started (anyio.to_thread): the work runs back on its loop."""

    sessions: Sessions

    def run(self, work: Callable[[Sessions], Awaitable[T]]) -> T:
        async def call() -> T:
            return await work(self.sessions)

        return anyio.from_thread.run(call)


def with_sessions(settings: Settings, work: Callable[[Sessions], Awaitable[T]]) -> T:
    """Run `work` against the configured database (SQLite under the data dir by default, or PostgreSQL),
    bringing its schema to head first, as `lorechat serve` does."""

    async def run() -> T:
        engine = create_engine(settings)
        try:
            async with db_errors():  # an unreachable database is one clear line and exit code 3, not a traceback
                await migrate(engine)
                return await work(session_factory(engine))
        finally:
            await engine.dispose()

    return anyio.run(run)
