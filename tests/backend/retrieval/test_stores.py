"""Both Store adapters on the same corpus: round trips, tenant isolation, replacement, deletion, guards."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from backend.errors import ErrorCode, LorechatError
from backend.retrieval.embedder import Embedder
from backend.retrieval.models import QueryVectors, SearchMode
from backend.retrieval.search import Retriever, chunking_id
from backend.retrieval.stores.protocol import Store, rank_key
from backend.settings import RetrievalSettings
from backend.stages import EmbeddedChunk
from tests.backend.retrieval.conftest import ADAPTERS, CORPUS, open_adapter

MODES: tuple[SearchMode, ...] = ("dense", "bm25", "hybrid")


@pytest.mark.parametrize("mode", MODES)
def test_roundtrip_finds_the_matching_chunk(retriever: Retriever, mode: SearchMode) -> None:
    hits = retriever.search("how to collimate telescope mirrors", mode=mode)
    assert hits, mode
    top = hits[0]
    expected = CORPUS[5]
    assert (top.chunk_id, top.creator, top.document_id, top.position) == (
        expected.chunk_id,
        "astro",
        "astro/telescope.md",
        1,
    )
    assert (top.text, top.title, top.heading, top.url) == (
        expected.text,
        expected.title,
        expected.heading,
        expected.url,
    )
    assert len(hits) <= 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("mode", MODES)
def test_creator_isolation_canary(retriever: Retriever, mode: SearchMode) -> None:
    """S4: rival's chunk is the best match for these queries, yet a baker-scoped search never sees it."""
    rival_text = CORPUS[7].text
    for query in (rival_text, "zebra quartz telescope canary phrase"):
        unscoped = retriever.search(query, mode=mode, k=9)
        assert unscoped[0].creator == "rival", (mode, query)
        scoped = retriever.search(query, mode=mode, creator="baker", k=9)
        assert {hit.creator for hit in scoped} <= {"baker"}, (mode, query)
    assert retriever.search(rival_text, mode=mode, creator="baker", k=9), mode
    assert retriever.search("sourdough", mode=mode, creator="nobody") == []


def test_replacing_a_documents_chunks(loaded_store: Store, retriever: Retriever) -> None:
    old = [c for c in CORPUS if c.document_id == "baker/sourdough.md"]
    new = [
        dataclasses.replace(
            old[0], text="Shape the loaf tightly and proof it in a floured banneton.", document_hash="hash-v2"
        ),
    ]
    assert loaded_store.delete_documents(["baker/sourdough.md"]) == 2
    loaded_store.upsert(retriever.embed_chunks(new))
    state = loaded_store.documents("baker")["baker/sourdough.md"]
    assert (state.content_hash, state.chunk_count) == ("hash-v2", 1)
    texts = {hit.text for hit in retriever.search("Dutch oven lid baking temperature", creator="baker", k=9)}
    assert old[1].text not in texts
    assert new[0].text in texts


# Not hybrid: copies' fused scores depend on the order the engine gives equal scores within each prefetch.
@pytest.mark.parametrize("mode", ["dense", "bm25"])
def test_a_tie_at_the_kth_place_falls_the_same_way_and_comes_whole(
    store: Store, embedder: Embedder, mode: SearchMode
) -> None:
    """Copies of one chunk score the same (Edge: exactly; qdrant-client's local mode: to the last bits): the k
    kept are the first in `rank_key` order of all candidates, every time, and each comes with its whole payload
    (Edge reads the payloads of the k kept only, after ranking the candidates)."""
    copies = [
        dataclasses.replace(CORPUS[5], document_id=f"astro/copy-{n}.md", document_hash=f"copy-{n}") for n in range(6)
    ]
    retriever = Retriever(embedder=embedder, store=store, settings=RetrievalSettings(k=3))
    embedded = [dataclasses.replace(item, sentence_vectors=f"packed-{item.chunk.document_id}")
                for item in retriever.embed_chunks(copies)]  # fmt: skip
    store.upsert(embedded)
    everything = store.search(retriever.query_vectors(CORPUS[5].text, mode=mode), k=len(copies), mode=mode)
    expected = sorted((hit.score, hit.chunk_id) for hit in everything)
    expected = [chunk_id for _, chunk_id in sorted(expected, key=rank_key)][:2]
    for _ in range(3):
        hits = retriever.search(CORPUS[5].text, mode=mode, k=2)
        assert [hit.chunk_id for hit in hits] == expected
        assert all(hit.text == CORPUS[5].text and hit.title == CORPUS[5].title for hit in hits)
        assert [hit.sentence_vectors for hit in hits] == [
            f"packed-{next(c.document_id for c in copies if c.chunk_id == hit.chunk_id)}" for hit in hits
        ]


def test_documents_and_counts(loaded_store: Store) -> None:
    everything = loaded_store.documents()
    assert set(everything) == {c.document_id for c in CORPUS}
    assert everything["baker/sourdough.md"].chunk_count == 2
    assert everything["baker/sourdough.md"].creator == "baker"
    assert everything["rival/secret.md"].content_hash == "rival-hash"
    assert set(loaded_store.documents("astro")) == {"astro/telescope.md", "astro/moon.md"}
    counts = {c.creator: (c.documents, c.chunks) for c in loaded_store.counts()}
    assert counts == {"astro": (2, 3), "baker": (3, 4), "rival": (2, 2)}


def test_upsert_is_idempotent(loaded_store: Store, embedded_corpus: list[EmbeddedChunk]) -> None:
    loaded_store.upsert(embedded_corpus)
    assert sum(c.chunks for c in loaded_store.counts()) == len(CORPUS)


def test_delete_documents_and_creator(loaded_store: Store) -> None:
    assert loaded_store.delete_documents([]) == 0
    assert loaded_store.delete_documents(["astro/moon.md", "missing.md"]) == 1
    assert loaded_store.delete_creator("rival") == 2
    assert loaded_store.delete_creator("rival") == 0
    counts = {c.creator: (c.documents, c.chunks) for c in loaded_store.counts()}
    assert counts == {"astro": (1, 2), "baker": (3, 4)}


def test_bm25_without_terms_finds_nothing(loaded_store: Store, embedder: Embedder) -> None:
    retriever = Retriever(embedder=embedder, store=loaded_store, settings=RetrievalSettings(k=5))
    assert retriever.search("the of and", mode="bm25") == []
    # Hybrid falls back to the dense side alone rather than failing.
    assert retriever.search("the of and", mode="hybrid")


def test_embedder_mismatch_is_refused(store: Store, embedder: Embedder) -> None:
    for other_id, other_size in (("all-MiniLM-L6-v2/onnx-int8", embedder.dimension), (embedder.embedder_id, 768)):
        with pytest.raises(LorechatError) as caught:
            store.ensure_collection(dense_size=other_size, embedder_id=other_id)
        assert caught.value.code is ErrorCode.index_mismatch
        assert embedder.embedder_id in caught.value.message
        assert other_id in caught.value.message
        assert "re-ingest" in caught.value.message
    store.ensure_collection(dense_size=embedder.dimension, embedder_id=embedder.embedder_id)


def test_search_vectors_cover_only_the_mode(retriever: Retriever) -> None:
    assert retriever.query_vectors("telescope", mode="bm25").dense == ()
    assert retriever.query_vectors("telescope", mode="dense").sparse.indices == ()
    both = retriever.query_vectors("telescope", mode="hybrid")
    assert len(both.dense) == 384
    assert both.sparse.indices


def test_bad_queries_are_input_errors(retriever: Retriever) -> None:
    for kwargs in ({"query": "   "}, {"query": "x", "k": 0}):
        with pytest.raises(LorechatError) as caught:
            retriever.search(**kwargs)  # type: ignore[arg-type]
        assert caught.value.code is ErrorCode.invalid_input


def test_default_k_and_mode_come_from_settings(retriever: Retriever) -> None:
    assert len(retriever.search("bread")) == 3
    assert isinstance(retriever.query_vectors("bread", mode="hybrid"), QueryVectors)


def test_concurrent_searches_from_worker_threads(retriever: Retriever) -> None:
    """The API searches from worker threads (asyncio.to_thread): answers match the sequential ones."""
    queries = ["sourdough", "telescope mirrors", "moon shadows", "starter flour"] * 4
    expected = [[h.chunk_id for h in retriever.search(q)] for q in queries]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda q: [h.chunk_id for h in retriever.search(q)], queries))
    assert got == expected


def test_points_counts_without_a_scan(retriever: Retriever) -> None:
    assert retriever.store.points() == sum(c.chunks for c in retriever.store.counts()) > 0


def test_chunks_sized_for_another_window_are_refused(
    tmp_path: Path, embedder: Embedder, request: pytest.FixtureRequest
) -> None:
    """Issue 15: the index records the window its chunks were fitted to; another window asks for a re-ingest."""
    for kind in ADAPTERS:
        store = open_adapter(kind, tmp_path / kind, request)
        try:
            built = chunking_id(embedder.max_tokens)
            store.ensure_collection(dense_size=embedder.dimension, embedder_id=embedder.embedder_id, chunking=built)
            # The same record (every Retriever passes it) opens; another window is refused, naming both.
            Retriever(embedder=embedder, store=store, settings=RetrievalSettings())
            other = chunking_id(512)
            with pytest.raises(LorechatError) as caught:
                store.ensure_collection(dense_size=embedder.dimension, embedder_id=embedder.embedder_id, chunking=other)
            assert caught.value.code is ErrorCode.index_mismatch
            assert built in caught.value.message and other in caught.value.message
            assert "Re-ingest" in caught.value.message
        finally:
            store.close()


def test_an_index_from_before_the_window_record_is_served_with_a_warning(
    store: Store, embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    # The fixture built it without a chunking record, as every index before issue 15 was.
    with caplog.at_level("WARNING", logger="backend.retrieval.stores.protocol"):
        Retriever(embedder=embedder, store=store, settings=RetrievalSettings())
    assert "re-ingest" in caplog.text
