"""The search cache: a question asked again skips the model and the engine, and never outlives a write to the index."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from backend.retrieval.embedder import Embedder
from backend.retrieval.search import Retriever
from backend.retrieval.search_cache import SearchCache, search_cache
from backend.retrieval.stores.edge import EdgeStore
from backend.retrieval.stores.protocol import Store
from backend.retrieval.stores.server import ServerStore
from backend.settings import RetrievalSettings, Settings
from backend.stages import EmbeddedChunk, Hit
from tests.backend.retrieval.conftest import make_chunk

QUESTION = "How long should sourdough proof in the fridge?"


def hit(chunk_id: str, score: float, *, text: str = "", vectors: str = "") -> Hit:
    return Hit(
        chunk_id=chunk_id,
        creator="c",
        document_id=f"c/{chunk_id}.md",
        source=f"{chunk_id}.md",
        title="T",
        url=None,
        text=text or f"text of {chunk_id}",
        score=score,
        sentence_vectors=vectors or None,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_served_at_its_revision_only() -> None:
    cache = SearchCache(1 << 20)
    hits = [hit("a", 0.9), hit("b", 0.5)]
    cache.put("q", 1, hits)
    assert cache.get("q", 1) == hits
    assert cache.get("other", 1) is None
    assert cache.get("q", 2) is None  # the index was written since: everything read before is gone
    assert len(cache) == 0 and cache.bytes == 0
    assert cache.get("q", 1) is None  # and stays gone


def test_a_served_list_is_the_callers_own() -> None:
    cache = SearchCache(1 << 20)
    cache.put("q", 0, [hit("a", 0.9), hit("b", 0.5)])
    served = cache.get("q", 0)
    assert served is not None
    served.pop()
    assert [h.chunk_id for h in cache.get("q", 0) or []] == ["a", "b"]


def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = SearchCache(1 << 20, ttl_seconds=30.0, clock=clock)
    cache.put("q", 0, [hit("a", 0.9)])
    clock.now = 29.0
    assert cache.get("q", 0) is not None
    clock.now = 30.5
    assert cache.get("q", 0) is None
    assert cache.bytes == 0


def test_the_byte_budget_drops_the_least_recently_used() -> None:
    big = "v" * 10_000
    cache = SearchCache(25_000)
    cache.put("first", 0, [hit("a", 0.9, vectors=big)])
    cache.put("second", 0, [hit("b", 0.9, vectors=big)])
    assert cache.get("first", 0) is not None  # used: now the most recent
    cache.put("third", 0, [hit("c", 0.9, vectors=big)])
    assert cache.get("second", 0) is None
    assert cache.get("first", 0) is not None and cache.get("third", 0) is not None
    assert cache.bytes <= 25_000


def test_a_chunk_shared_by_searches_is_held_once_with_each_searchs_score() -> None:
    big = "v" * 10_000
    cache = SearchCache(1 << 20)
    cache.put("q1", 0, [hit("a", 0.9, vectors=big)])
    one = cache.bytes
    cache.put("q2", 0, [hit("a", 0.4, vectors="v" * 10_000)])  # the same chunk, read again: new strings
    assert cache.bytes - one < 2_000  # the second entry's own bytes, not the chunk's again
    first, second = cache.get("q1", 0), cache.get("q2", 0)
    assert first is not None and second is not None
    assert (first[0].score, second[0].score) == (0.9, 0.4)
    assert second[0].sentence_vectors is first[0].sentence_vectors  # one copy of the big strings
    cache.put("q1", 0, [hit("b", 0.9)])  # replaced: "a" is still held by q2
    assert cache.get("q2", 0) is not None
    cache.put("q2", 0, [])
    assert set(cache._chunks) == {"b"}  # "a" went with its last user


def test_entries_count_too_when_their_chunks_are_all_shared() -> None:
    """Ten thousand questions over the same two chunks: the chunks are held once, and the entries themselves are
    what the budget bounds."""
    cache = SearchCache(200_000)
    for i in range(10_000):
        cache.put(f"question {i}", 0, [hit("a", 0.9), hit("b", 0.5)])
    assert 0 < len(cache) < 10_000 and cache.bytes <= 200_000
    assert cache.get("question 9999", 0) is not None and cache.get("question 0", 0) is None


def test_an_ingest_elsewhere_is_seen_through_the_followed_catalog_version(
    loaded_store: Store, embedder: Embedder
) -> None:
    """On a Qdrant server other replicas write too: their ingests bump the shared catalog's version (after the
    index writes), which the cache follows, so this replica searches again instead of waiting out the TTL."""
    catalog = {"version": 7}
    cache = SearchCache(1 << 24, ttl_seconds=3600.0, follows=lambda: catalog["version"])
    retriever = Retriever(embedder=embedder, store=loaded_store, settings=RetrievalSettings(k=3), cache=cache)
    retriever.search(QUESTION)
    assert retriever.recall(QUESTION) is not None
    catalog["version"] = 8  # another replica's ingest
    assert retriever.recall(QUESTION) is None


def test_the_service_cache_expires_only_where_others_write(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    edge = EdgeStore(tmp_path / "index", hnsw_ef=64)
    local = ServerStore(":memory:", None, "c", hnsw_ef=64, timeout=5)
    server = ServerStore("http://127.0.0.1:9", None, "c", hnsw_ef=64, timeout=1)  # never called
    try:
        assert [search_cache(settings, store)._ttl for store in (edge, local, server)] == [None, None, 30.0]  # type: ignore[union-attr]
        off = settings.model_copy(update={"retrieval": RetrievalSettings(cache_mib=0)})
        assert search_cache(off, edge) is None
    finally:
        for store in (edge, local, server):
            store.close()


class CountingStore:
    """The real store, counting the searches that reach the engine."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.searches = 0

    def search(self, *args: Any, **kwargs: Any) -> list[Hit]:
        self.searches += 1
        return self.inner.search(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def cached_retriever(store: Store, embedder: Embedder) -> tuple[Retriever, CountingStore]:
    counting = CountingStore(store)
    retriever = Retriever(
        embedder=embedder,
        store=counting,  # type: ignore[arg-type]
        settings=RetrievalSettings(k=3),
        cache=SearchCache(1 << 24),
    )
    return retriever, counting


def test_a_question_asked_again_skips_the_engine(loaded_store: Store, embedder: Embedder) -> None:
    retriever, counting = cached_retriever(loaded_store, embedder)
    plain = Retriever(embedder=embedder, store=loaded_store, settings=RetrievalSettings(k=3))
    assert retriever.recall(QUESTION) is None
    first = retriever.search(QUESTION)
    assert first == plain.search(QUESTION)  # the same hits as without a cache
    assert retriever.recall(QUESTION) == first == retriever.search(QUESTION)
    assert counting.searches == 1
    # Scope and settings are part of the question: another creator, k or mode reaches the engine.
    scoped = retriever.search(QUESTION, creator="rival")
    assert {h.creator for h in scoped} == {"rival"}
    retriever.search(QUESTION, k=2)
    retriever.search(QUESTION, mode="bm25")
    assert counting.searches == 4
    assert retriever.recall(QUESTION, creator="rival") == scoped


def test_a_write_to_the_index_is_seen_by_the_next_search(
    loaded_store: Store, embedder: Embedder, embedded_corpus: list[EmbeddedChunk]
) -> None:
    retriever, counting = cached_retriever(loaded_store, embedder)
    canary = "Marmalade orbit lantern: a phrase no chunk held before this write."
    before = retriever.search(canary)
    assert canary not in {h.text for h in before}
    new = make_chunk("alice", "alice/new.md", 0, canary, title="New")
    loaded_store.upsert(retriever.embed_chunks([new]))
    assert retriever.recall(canary) is None
    assert retriever.search(canary)[0].text == canary
    assert counting.searches == 2
    loaded_store.delete_documents(["alice/new.md"])
    assert canary not in {h.text for h in retriever.search(canary)}
    assert counting.searches == 3


def test_a_search_that_a_write_overtook_is_not_kept(loaded_store: Store, embedder: Embedder) -> None:
    """A write that finished while the engine read may or may not be in what it read: such a result is served
    once, not cached."""
    retriever, counting = cached_retriever(loaded_store, embedder)
    real_search = counting.search

    def search_during_a_write(*args: Any, **kwargs: Any) -> list[Hit]:
        found = real_search(*args, **kwargs)
        loaded_store.upsert([])  # a write, however small, is a new revision
        return found

    counting.search = search_during_a_write  # type: ignore[method-assign]
    retriever.search(QUESTION)
    assert retriever.recall(QUESTION) is None


def test_cached_hits_are_the_stored_ones_whole(loaded_store: Store, embedder: Embedder) -> None:
    retriever, _ = cached_retriever(loaded_store, embedder)
    first = retriever.search(QUESTION)
    again = retriever.search(QUESTION)
    for a, b in zip(first, again, strict=True):
        assert dataclasses.astuple(a) == dataclasses.astuple(b)  # text, scores, timestamps, sentence vectors
