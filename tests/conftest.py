"""Suite-wide fixtures: where the real services are, and one embedder per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.retrieval.embedder import Embedder, get_embedder
from backend.settings import EmbeddingSettings, get_settings

REPO = Path(__file__).resolve().parent.parent
DEMO_CONTENT = REPO / "examples" / "content"

# scripts/test exports these (reusing or starting servers); the defaults are this machine kind's own.
PG_URL = os.environ.get("LORECHAT_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LORECHAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


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
