"""Recent searches, for questions asked again: a knowledge site's visitors ask the same few things.

A search repeated with the same query, scope and settings is answered from here, without the query embedding or
the engine, and without a worker thread when the event loop asks first (`Retriever.recall`): the engine's query
holds the GIL and was a tenth of a repeated turn's CPU (BENCHMARKS.md, "Turn cost").

An entry is only as good as the index it was read from. Every write a store makes (an ingest through the
running server, a creator removed) bumps its `revision`, and an entry read at another revision is never served:
the embedded index (Qdrant Edge) is written by this process alone (one process per shard), so that is exact. A
Qdrant server has other writers too (another replica's ingest, a curator's CLI): their ingests bump the shared
catalog's version after writing the index, which the service follows (`follows`, checked about once a second),
and anything written past the catalog is seen within `ttl_seconds`, the most an entry is served there.

The hits keep their stored sentence vectors (the service seeds its sentence cache from them), which are ~20x the
chunk's text, so the cache is bounded by bytes, not by a count of entries: those of the distinct chunks it holds
(a chunk that many cached searches share is held once) and each entry's own.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from backend.retrieval.stores.protocol import Store
from backend.settings import Settings
from backend.stages import Hit

_HIT_OVERHEAD = 256  # bytes of a Hit object and its small fields, beside its text and vectors
_ENTRY_OVERHEAD = 512  # bytes of an entry, its key and its list, beside its hits


@dataclass(slots=True)
class _Entry:
    hits: tuple[Hit, ...]
    born: float
    size: int  # its own bytes: its key and its hits' objects (the chunks' strings are counted once, in _Chunk)


@dataclass(slots=True)
class _Chunk:
    hit: Hit  # the first copy read: later entries' hits share its strings
    users: int  # entries holding it
    size: int


class SearchCache:
    """Thread-safe: the event loop looks up, worker threads fill."""

    def __init__(
        self,
        max_bytes: int,
        *,
        ttl_seconds: float | None = None,
        follows: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_bytes = max_bytes
        self._follows = follows
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()  # least recently used first
        self._chunks: dict[str, _Chunk] = {}
        self._bytes = 0
        self._revision: object = None

    def revision(self, store: Store) -> object:
        """What an entry read from `store` now is valid for: the store's own revision, and what else it follows."""
        return store.revision if self._follows is None else (store.revision, self._follows())

    def get(self, key: Hashable, revision: object) -> list[Hit] | None:
        """The hits cached under `key` at this index revision, or None."""
        with self._lock:
            self._follow(revision)
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self._ttl is not None and self._clock() - entry.born > self._ttl:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return list(entry.hits)

    def put(self, key: Hashable, revision: object, hits: Sequence[Hit]) -> None:
        """Keep `hits`, read at `revision` (the store's revision before the search began)."""
        with self._lock:
            self._follow(revision)
            if key in self._entries:
                self._drop(key)
            shared = tuple(self._share(hit) for hit in hits)
            size = _ENTRY_OVERHEAD + len(str(key)) + _HIT_OVERHEAD * len(shared)
            self._entries[key] = _Entry(shared, self._clock(), size)
            self._bytes += size
            while self._bytes > self._max_bytes and self._entries:
                self._drop(next(iter(self._entries)))

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    # -- under the lock ----------------------------------------------------------------------------------------

    def _follow(self, revision: object) -> None:
        """Another revision of the index: every entry read before it is stale."""
        if revision != self._revision:
            self._entries.clear()
            self._chunks.clear()
            self._bytes = 0
            self._revision = revision

    def _share(self, hit: Hit) -> Hit:
        # One revision of the index has one payload per chunk id (a chunk rewritten is a new revision).
        chunk = self._chunks.get(hit.chunk_id)
        if chunk is None:
            size = _HIT_OVERHEAD + len(hit.text) + len(hit.sentence_vectors or "") + len(hit.title) + len(hit.heading)
            chunk = self._chunks[hit.chunk_id] = _Chunk(hit, 0, size)
            self._bytes += size
        chunk.users += 1
        if chunk.hit.score == hit.score:
            return chunk.hit
        return dataclasses.replace(chunk.hit, score=hit.score)  # its own score, the first copy's strings

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size
        for hit in entry.hits:
            chunk = self._chunks.get(hit.chunk_id)
            if chunk is None:
                continue
            chunk.users -= 1
            if chunk.users <= 0:
                del self._chunks[hit.chunk_id]
                self._bytes -= chunk.size


def search_cache(
    settings: Settings, store: Store, *, follows: Callable[[], object] | None = None
) -> SearchCache | None:
    """The service's cache for `store` (None when `retrieval.cache_mib` is 0); `follows`: the shared catalog's
    version, which every ingest bumps after writing the index."""
    retrieval = settings.retrieval
    if retrieval.cache_mib == 0:
        return None
    ttl = None if store.sees_every_write else retrieval.cache_seconds
    return SearchCache(retrieval.cache_mib * 1024 * 1024, ttl_seconds=ttl, follows=follows)
