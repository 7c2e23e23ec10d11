"""open_store picks the adapter from settings; an unreachable server is index_unavailable, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from backend.errors import ErrorCode, LorechatError
from backend.retrieval.stores import open_store
from backend.retrieval.stores.edge import EdgeStore
from backend.retrieval.stores.server import ServerStore
from backend.settings import IndexSettings, Settings


def test_edge_by_default_under_the_data_dir(tmp_path: Path) -> None:
    store = open_store(Settings(data_dir=tmp_path))
    try:
        assert isinstance(store, EdgeStore)
        assert store.path == tmp_path / "index"
        store.ensure_collection(dense_size=8, embedder_id="test/none")
        assert (tmp_path / "index" / "shard").is_dir()
    finally:
        store.close()


def test_server_local_modes(tmp_path: Path) -> None:
    for url in (":memory:", str(tmp_path / "qdrant-local")):
        store = open_store(Settings(data_dir=tmp_path, index=IndexSettings(kind="server", url=url)))
        try:
            assert isinstance(store, ServerStore)
            assert store.local
            store.ensure_collection(dense_size=8, embedder_id="test/none")
            assert store.documents() == {}
        finally:
            store.close()


def test_server_without_url_is_a_settings_error(tmp_path: Path) -> None:
    # Refused when the settings are read (serve, ingest, any command), before anything is opened.
    with pytest.raises(ValidationError) as caught:
        Settings(data_dir=tmp_path, index=IndexSettings(kind="server"))
    assert "index.url must be set" in str(caught.value)


def test_unreachable_server_is_index_unavailable(tmp_path: Path) -> None:
    """F6: a down Qdrant answers fast with a retryable 503 code and no host name in the message."""
    settings = Settings(
        data_dir=tmp_path,
        index=IndexSettings(kind="server", url="http://127.0.0.1:9", timeout_seconds=1, api_key="secret-key"),
    )
    store = open_store(settings)
    try:
        with pytest.raises(LorechatError) as caught:
            store.ensure_collection(dense_size=8, embedder_id="test/none")
        assert caught.value.code is ErrorCode.index_unavailable
        assert caught.value.retryable
        assert "127.0.0.1" not in caught.value.message
        assert "secret-key" not in caught.value.message
    finally:
        store.close()
