"""Where the real test services live, and stand-ins for a dead or a silent Redis."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from backend.metrics import REGISTRY

PG_URL = os.environ.get("LORECHAT_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LORECHAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Nothing listens on port 1: connections are refused at once.
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"


def closed_port() -> int:
    """A port that was free a moment ago and has no listener now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A TCP server that accepts connections and never answers: a Redis that hangs (F2). Yields its URL."""
    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


def fallbacks(dependency: str) -> float:
    return REGISTRY.get_sample_value("lorechat_dependency_fallbacks_total", {"dependency": dependency}) or 0.0


def rejections(scope: str) -> float:
    return REGISTRY.get_sample_value("lorechat_limiter_rejections_total", {"scope": scope}) or 0.0
