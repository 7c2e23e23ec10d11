"""The index's stores: one protocol (protocol.py, with the payload and filter helpers both adapters share), the
embedded Qdrant Edge shard (edge.py, the default) and a Qdrant server or cluster (server.py), and
`open_store`, which picks the one the settings ask for. tests/backend/retrieval/test_congruence.py checks that
both adapters answer alike."""

from __future__ import annotations

from backend.retrieval.stores.protocol import Store
from backend.settings import Settings


def open_store(settings: Settings) -> Store:
    """Open (not create) the index; callers then call ensure_collection with their embedder's id and size."""
    index = settings.index
    if index.kind == "edge":
        from backend.retrieval.stores.edge import EdgeStore

        return EdgeStore(settings.index_path, hnsw_ef=index.hnsw_ef)
    from backend.retrieval.stores.server import ServerStore

    return ServerStore(
        index.url,
        index.api_key.get_secret_value() if index.api_key else None,
        index.collection,
        hnsw_ef=index.hnsw_ef,
        timeout=index.timeout_seconds,
    )
