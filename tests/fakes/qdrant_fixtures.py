"""Pytest fixtures for the Qdrant server test double (tests/fakes/qdrant_server.py; a test double, never a
production component). Registered for the whole suite in tests/conftest.py's `pytest_plugins`.

    def test_x(qdrant_server):                     # a double in a thread of this process, on a fresh folder
        store = ServerStore(qdrant_server.url, None, "lorechat", hnsw_ef=128, timeout=5)
        qdrant_server.data_dir                     # where its shards live

    def test_y(qdrant_server_factory, tmp_path):   # more, or on a chosen folder, or as their own OS process
        first = qdrant_server_factory(tmp_path / "index")
        other = qdrant_server_factory(api_key="secret", process=True)   # .url, .data_dir, .kill(), .stop()

Outside pytest: `with QdrantServerDouble(data_dir) as server: server.url`. Each double is stopped at the end of
the test (a process double by SIGTERM, so it closes its shards); stop one earlier to restart another on its
folder (one double at a time per folder).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakes.qdrant_server import QdrantServerDouble, QdrantServerProcess

QdrantServerFactory = Callable[..., "QdrantServerDouble | QdrantServerProcess"]


@pytest.fixture
def qdrant_server(tmp_path: Path) -> Iterator[QdrantServerDouble]:
    """A running double (no api key) on `tmp_path / "qdrant"`."""
    with QdrantServerDouble(tmp_path / "qdrant") as server:
        yield server


@pytest.fixture
def qdrant_server_factory(tmp_path: Path) -> Iterator[QdrantServerFactory]:
    """factory(data_dir=None, *, api_key=None, process=False): a started double (in a thread, or with
    process=True its own OS process); data_dir defaults to a fresh folder under tmp_path."""
    started: list[QdrantServerDouble | QdrantServerProcess] = []

    def start(
        data_dir: Path | None = None, *, api_key: str | None = None, process: bool = False
    ) -> QdrantServerDouble | QdrantServerProcess:
        folder = data_dir if data_dir is not None else tmp_path / f"qdrant-{len(started)}"
        kind = QdrantServerProcess if process else QdrantServerDouble
        server = kind(folder, api_key=api_key).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()
