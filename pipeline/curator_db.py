"""The service's database for the pipeline's synchronous code (catalog writes, sites, gaps, ingest runs).

Two ways to reach it: `OwnEngine` opens, migrates and disposes an engine of its own per call (the CLI), and
`ServiceLoop` runs the work on the service's event loop with the service's sessions (an ingest the admin
route runs in a worker thread, so it shares the service's connection pool instead of opening another).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

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


def _loop_token() -> Any:
    try:
        return anyio.lowlevel.current_token()
    except RuntimeError:  # made outside the loop: only its worker threads may run work
        return None


@dataclass(frozen=True, slots=True)
class ServiceLoop:
    """From a thread other than the loop's own: the work runs back on the service's loop. Made on the loop (a route,
    the scheduler), it knows that loop and serves any thread (a channel sync's lease heartbeat); otherwise only
    the worker threads the service started (anyio.to_thread)."""

    sessions: Sessions
    token: Any = field(default_factory=_loop_token)

    def run(self, work: Callable[[Sessions], Awaitable[T]]) -> T:
        async def call() -> T:
            return await work(self.sessions)

        return anyio.from_thread.run(call, token=self.token)


_MIGRATING = threading.Lock()


def with_sessions(settings: Settings, work: Callable[[Sessions], Awaitable[T]]) -> T:
    """Run `work` against the configured database (SQLite under the data dir by default, or PostgreSQL),
    bringing its schema to head first, as `lorechat serve` does."""

    async def run() -> T:
        engine = create_engine(settings)
        try:
            async with db_errors():  # an unreachable database is one clear line and exit code 3, not a traceback
                with _MIGRATING:  # Alembic's context is process-global: one thread migrates at a time
                    await migrate(engine)
                return await work(session_factory(engine))
        finally:
            await engine.dispose()

    return anyio.run(run)
