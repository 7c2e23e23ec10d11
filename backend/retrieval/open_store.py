"""Pick the Store adapter the settings ask for: the embedded Edge shard or a Qdrant server."""

from __future__ import annotations

from backend.retrieval.store import Store
from backend.settings import Settings


def open_store(settings: Settings) -> Store:
    """Open (not create) the index; callers then call ensure_collection with their embedder's id and size."""
    index = settings.index
    if index.kind == "edge":
        from backend.retrieval.edge_store import EdgeStore

        return EdgeStore(settings.index_path, hnsw_ef=index.hnsw_ef)
    from backend.retrieval.server_store import ServerStore

    return ServerStore(
        index.url,
        index.api_key.get_secret_value() if index.api_key else None,
        index.collection,
        hnsw_ef=index.hnsw_ef,
        timeout=index.timeout_seconds,
    )
