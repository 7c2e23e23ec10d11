"""Suite-wide fixtures: where the real services are, and one embedder per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.retrieval.embedder import Embedder, get_embedder
from backend.retrieval.search import Retriever
from backend.settings import (
    ChunkingSettings,
    DatabaseSettings,
    EmbeddingSettings,
    RedisSettings,
    Settings,
    get_settings,
)
from pipeline.indexer import Indexer

# The HTTP suite's fixtures (an ingested index, this run's PostgreSQL database and Redis, the two deployments, the
# scripted upstream) serve every folder that runs the service: api, curation and deploy tests alike, built once.
pytest_plugins = ["tests.backend.api.fixtures", "tests.fakes.qdrant_fixtures"]

REPO = Path(__file__).resolve().parent.parent
DEMO_CONTENT = REPO / "examples" / "content"

# scripts/test exports these (reusing or starting servers); the defaults are this machine kind's own.
PG_URL = os.environ.get("LORECHAT_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LORECHAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def indexer(retriever: Retriever, data_dir: Path, *, chunking: ChunkingSettings, database_url: str = "") -> Indexer:
    """The pipeline's indexer as `lorechat ingest` builds it, its catalog in `database_url` (empty: the SQLite
    database under `data_dir`, which travels with a copy of the data dir)."""
    settings = Settings(
        data_dir=data_dir, chunking=chunking, database=DatabaseSettings(url=database_url), redis=RedisSettings(url="")
    )
    return Indexer.from_settings(settings, retriever)


@pytest.fixture(scope="session")
def shared_embedder() -> Embedder:
    """The real bundled model with the default backend (ONNX fp32, from the machine's model cache, which
    scripts/setup fills), loaded once for the whole run."""
    return get_embedder(EmbeddingSettings())


@pytest.fixture
def lorechat_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh data directory for code that reads settings from the environment (the CLI)."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("LORECHAT_DATA_DIR", str(data_dir))
    monkeypatch.setenv("LORECHAT_CONFIG", str(REPO / "config.yaml"))
    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The mark scripts/test looks for: the session reached its end (a test that ended the process did not)."""
    mark = os.environ.get("LORECHAT_TEST_FINISHED")
    if mark:
        with open(mark, "w", encoding="utf-8") as out:
            out.write(f"{exitstatus}\n")
