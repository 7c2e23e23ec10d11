"""The server adapter over HTTP, against the Qdrant server double (tests/fakes/qdrant_server.py: Qdrant's REST API
as qdrant-client speaks it, on the real engine): the same answers as the embedded adapter, several processes on
one index, the API's refusals, the api key, a restart, and `lorechat ingest` / `search` / `ask` on it.

test_stores.py and test_congruence.py run their cases over HTTP too (their "http" adapter); these are the cases
only a server has."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from backend.errors import ErrorCode, LorechatError
from backend.retrieval.embedder import Embedder
from backend.retrieval.models import QueryVectors, SearchMode
from backend.retrieval.search import Retriever
from backend.retrieval.stores.edge import EdgeStore
from backend.retrieval.stores.protocol import Fusion, Store
from backend.retrieval.stores.server import ServerStore
from backend.settings import RetrievalSettings, get_settings
from backend.stages import EmbeddedChunk, Hit, SparseVector
from pipeline.cli import main
from tests.backend.retrieval.conftest import CORPUS, make_chunk
from tests.backend.retrieval.test_congruence import CREATORS, QUERIES, ranking
from tests.conftest import DEMO_CONTENT
from tests.fakes.qdrant_server import QdrantServerDouble, QdrantServerProcess

COLLECTION = "lorechat-test"
MODES: tuple[SearchMode, ...] = ("dense", "bm25", "hybrid")
FUSIONS = (
    Fusion(),
    Fusion(rrf_k=10),
    Fusion(dense_weight=1.0, bm25_weight=0.5),
    Fusion(method="dbsf"),
    Fusion(method="zscore", dense_weight=1.5),
)


def http_store(server: QdrantServerDouble | QdrantServerProcess, api_key: str | None = None) -> ServerStore:
    return ServerStore(server.url, api_key, COLLECTION, hnsw_ef=128, timeout=5)


def shown(hit: Hit) -> tuple[Any, ...]:
    """Everything a hit carries but its score (RRF scores are compared as rankings, not as numbers)."""
    return tuple(value for key, value in dataclasses.asdict(hit).items() if key != "score")


@pytest.fixture
def pair(
    tmp_path: Path, qdrant_server: QdrantServerDouble, embedder: Embedder, embedded_corpus: list[EmbeddedChunk]
) -> Iterator[tuple[Retriever, Retriever]]:
    """The corpus in an Edge shard and, over HTTP, in the double: (edge, http) retrievers."""
    stores: list[Store] = [EdgeStore(tmp_path / "edge", hnsw_ef=128), http_store(qdrant_server)]
    retrievers = tuple(Retriever(embedder=embedder, store=store, settings=RetrievalSettings(k=5)) for store in stores)
    for store in stores:
        store.upsert(embedded_corpus)
    yield retrievers  # type: ignore[misc]
    for store in stores:
        store.close()


# ---- the same answers as the embedded adapter ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_same_hits_as_edge(pair: tuple[Retriever, Retriever], mode: SearchMode) -> None:
    """Same engine behind both: for every query and creator the same chunks in the same order, with the same
    payloads; the creator filter scopes both."""
    edge, http = pair
    answered = 0
    for query in QUERIES:
        for creator in CREATORS:
            expected = edge.search(query, creator=creator, mode=mode, k=len(CORPUS))
            got = http.search(query, creator=creator, mode=mode, k=len(CORPUS))
            assert ranking(got) == ranking(expected), (query, creator)
            assert [shown(h) for h in got] == [shown(h) for h in expected], (query, creator)
            assert {h.creator for h in got} <= ({creator} if creator else {"baker", "astro", "rival"})
            answered += bool(got)
    assert answered >= len(QUERIES) * len(CREATORS) // 2


def tie_in_a_prefetch(store: Store, vectors: QueryVectors, creator: str | None, scope: list[str] | None) -> bool:
    """Whether two candidates score exactly alike in the dense or the BM25 list. The engine orders such a tie one way
    in one shard and the other way in another (two Edge shards of the same points disagree, stably), and RRF turns
    that order into different fused scores; so there the fused lists are compared as sets."""
    for mode in ("dense", "bm25"):
        scores = [hit.score for hit in store.search(vectors, k=50, mode=mode, creator=creator, documents=scope)]
        if len(set(scores)) < len(scores):
            return True
    return False


@pytest.mark.parametrize("fusion", FUSIONS, ids=["rrf", "rrf-k10", "weighted-rrf", "dbsf", "zscore"])
def test_same_hybrid_ranking_for_every_fusion_and_document_scope(
    pair: tuple[Retriever, Retriever], fusion: Fusion
) -> None:
    edge, http = pair
    documents = ["baker/sourdough.md", "rival/secret.md", "astro/moon.md"]
    exact = 0
    for query in QUERIES:
        vectors = edge.query_vectors(query, mode="hybrid")
        for creator in CREATORS:
            for scope in (None, documents):
                expected, got = (
                    retriever.store.search(
                        vectors, k=len(CORPUS), mode="hybrid", creator=creator, fusion=fusion, documents=scope
                    )
                    for retriever in (edge, http)
                )
                assert {h.chunk_id for h in got} == {h.chunk_id for h in expected}, (query, creator, scope)
                if fusion.method == "dbsf" or not tie_in_a_prefetch(edge.store, vectors, creator, scope):
                    assert ranking(got) == ranking(expected), (query, creator, scope)
                    exact += 1
                if scope is not None:
                    assert {h.document_id for h in got} <= set(documents)
    assert exact >= len(QUERIES) * len(CREATORS)  # most pairs have no tie: the rankings were compared


def test_deletes_counts_and_listing_match_edge(pair: tuple[Retriever, Retriever]) -> None:
    stores = [retriever.store for retriever in pair]

    def state(store: Store) -> tuple[Any, ...]:
        return store.documents(), store.documents("baker"), store.counts(), store.points()

    assert state(stores[1]) == state(stores[0])
    for store in stores:
        assert store.delete_documents(["baker/sourdough.md", "astro/moon.md", "missing.md"]) == 3
    assert state(stores[1]) == state(stores[0])
    for store in stores:
        assert store.delete_creator("rival") == 2
        assert store.delete_creator("rival") == 0
    assert state(stores[1]) == state(stores[0])
    assert {c.creator: (c.documents, c.chunks) for c in stores[1].counts()} == {"astro": (1, 2), "baker": (2, 2)}
    assert stores[1].points() == 4


# ---- several processes on one index --------------------------------------------------------------------------

DIMENSION = 8
DOCUMENTS_EACH = 24
SHARED_DOCUMENTS = 6


def synthetic(creator: str, document: str, position: int, version: str = "v1") -> EmbeddedChunk:
    """A chunk with vectors derived from its id: no model needed in the writer processes."""
    chunk = make_chunk(creator, f"{creator}/{document}", position, f"{document} part {position} {version}",
                       title=document, document_hash=f"{document}-{version}")  # fmt: skip
    digest = hashlib.sha256(chunk.chunk_id.encode()).digest()
    dense = tuple((byte - 127.5) / 127.5 for byte in digest[:DIMENSION])
    sparse = SparseVector(indices=(digest[8], 256 + digest[9]), values=(1.0, 0.5))
    return EmbeddedChunk(chunk=chunk, dense=dense, sparse=sparse)


def document_chunks(creator: str, document: str, version: str = "v1") -> list[EmbeddedChunk]:
    return [synthetic(creator, document, position, version) for position in range(3)]


def write_from_another_process(url: str, creator: str, barrier: Any) -> None:
    """One writer, as a worker ingesting its creator would: create the collection if missing (all writers at once,
    so they race for it), upsert document by document, replace every fourth (delete, then upsert), and write the
    shared creator's documents, which every writer writes the same."""
    store = ServerStore(url, None, COLLECTION, hnsw_ef=64, timeout=30)
    barrier.wait(timeout=60)
    store.ensure_collection(dense_size=DIMENSION, embedder_id="test/synthetic")
    for n in range(DOCUMENTS_EACH):
        store.upsert(document_chunks(creator, f"doc-{n}.md"))
        if n % 4 == 0:
            store.delete_documents([f"{creator}/doc-{n}.md"])
            store.upsert(document_chunks(creator, f"doc-{n}.md", "v2"))
        if n < SHARED_DOCUMENTS:
            store.upsert(document_chunks("shared", f"common-{n}.md"))
    store.close()


def test_two_processes_writing_one_collection_at_once_lose_nothing(qdrant_server: QdrantServerDouble) -> None:
    writers = ("alpha", "beta")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(writers))
    processes = [
        context.Process(target=write_from_another_process, args=(qdrant_server.url, creator, barrier))
        for creator in writers
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0, 0]

    store = http_store(qdrant_server)
    try:
        documents = store.documents()
        expected = {f"{creator}/doc-{n}.md" for creator in writers for n in range(DOCUMENTS_EACH)}
        expected |= {f"shared/common-{n}.md" for n in range(SHARED_DOCUMENTS)}
        assert set(documents) == expected
        assert {state.chunk_count for state in documents.values()} == {3}
        for creator in writers:
            for n in range(DOCUMENTS_EACH):
                want = f"doc-{n}.md-{'v2' if n % 4 == 0 else 'v1'}"
                assert documents[f"{creator}/doc-{n}.md"].content_hash == want
        assert store.points() == 3 * len(expected)
        counts = {c.creator: (c.documents, c.chunks) for c in store.counts()}
        assert counts == {"alpha": (24, 72), "beta": (24, 72), "shared": (6, 18)}
        # Every point is searchable, and scoped to its writer.
        probe = synthetic("beta", "doc-5.md", 1)
        query = QueryVectors(dense=probe.dense, sparse=probe.sparse)
        hits = store.search(query, k=3, mode="dense", creator="beta")
        assert hits[0].chunk_id == probe.chunk.chunk_id
        assert {h.creator for h in store.search(query, k=50, mode="hybrid", creator="alpha")} == {"alpha"}
    finally:
        store.close()
    # Both writers asked to create the collection; the server made one.
    creates = [r for r in qdrant_server.requests if r.method == "PUT" and r.path == f"/collections/{COLLECTION}"]
    assert 1 <= len(creates) <= 2 and [r.status for r in creates].count(200) == 1


def test_a_collection_created_by_another_process_meanwhile_is_adopted(
    qdrant_server: QdrantServerDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race above, made certain: another process creates the collection between this one's check and its
    create. A server answers the create 409 (Qdrant ≥ 1.8); the adapter checks what built it and goes on, where
    it used to fail with index_unavailable."""
    winner, loser = http_store(qdrant_server), http_store(qdrant_server)
    try:
        winner.ensure_collection(dense_size=DIMENSION, embedder_id="test/synthetic", chunking="w1")
        monkeypatch.setattr(loser._client, "collection_exists", lambda *_args, **_kwargs: False)
        loser.ensure_collection(dense_size=DIMENSION, embedder_id="test/synthetic", chunking="w1")
        assert qdrant_server.requests[-2].status == 409  # the create, then reading what built it
        with pytest.raises(LorechatError) as caught:
            loser.ensure_collection(dense_size=DIMENSION + 1, embedder_id="test/synthetic", chunking="w1")
        assert caught.value.code is ErrorCode.index_mismatch
        loser.upsert(document_chunks("alpha", "doc.md"))
        assert winner.documents()["alpha/doc.md"].chunk_count == 3
    finally:
        winner.close()
        loser.close()


# ---- what the API refuses ------------------------------------------------------------------------------------


def test_malformed_requests_are_400_and_unknown_routes_404(qdrant_server: QdrantServerDouble) -> None:
    store = http_store(qdrant_server)
    store.ensure_collection(dense_size=DIMENSION, embedder_id="test/synthetic")
    store.close()
    points = f"{qdrant_server.url}/collections/{COLLECTION}/points"
    good_point = {"id": synthetic("a", "d.md", 0).chunk.chunk_id, "vector": {"dense": [0.1] * DIMENSION}}

    def error(response: httpx.Response, status: int) -> str:
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) == {"status", "time"} and isinstance(body["time"], float)
        return str(body["status"]["error"])

    with httpx.Client(timeout=5) as client:
        # A body the client's own models reject (a misspelt field, a missing one, a wrong type): 400.
        assert "Format error in JSON body" in error(client.put(points, json={"pointz": []}), 400)
        assert "Format error" in error(client.put(points, json={"points": [{"id": 1}]}), 400)
        assert "Format error" in error(client.post(f"{points}/count", json={"exact": "yes"}), 400)
        assert "Format error" in error(client.post(f"{points}/query", content=b"{not json"), 400)
        # Valid JSON the server refuses: a string id that is no UUID, a limit of 0, a vector of the wrong size.
        bad_id = {"points": [{**good_point, "id": "not-a-uuid"}]}
        assert "not a valid point ID" in error(client.put(points, json=bad_id), 400)
        zero = {"query": [0.1] * DIMENSION, "using": "dense", "limit": 0}
        assert "limit" in error(client.post(f"{points}/query", json=zero), 400)
        short = {"points": [{**good_point, "vector": {"dense": [0.1, 0.2]}}]}
        assert "Vector dimension error" in error(client.put(points, params={"wait": "true"}, json=short), 400)
        fusion_alone = {"query": {"fusion": "rrf"}}
        assert "prefetch" in error(client.post(f"{points}/query", json=fusion_alone), 400)
        # The well-formed write goes through, and was checked to be well-formed by the same rules.
        accepted = client.put(points, params={"wait": "true"}, json={"points": [good_point]})
        assert accepted.status_code == 200 and accepted.json()["result"]["status"] == "completed"
        # Unknown routes and collections: 404; a known route with another method: 405.
        assert "no route" in error(client.get(f"{qdrant_server.url}/collections/{COLLECTION}/nothing"), 404)
        assert "no route" in error(client.post(f"{qdrant_server.url}/points/search", json={}), 404)
        missing = client.post(f"{qdrant_server.url}/collections/missing/points/count", json={})
        assert "doesn't exist" in error(missing, 404)
        error(client.get(points), 405)
    # The adapter turns a refusal into index_unavailable, with no host in the message.
    store = http_store(qdrant_server)
    try:
        with pytest.raises(LorechatError) as caught:
            store.search(QueryVectors(dense=(0.1, 0.2), sparse=SparseVector((), ())), k=3, mode="dense")
        assert caught.value.code is ErrorCode.index_unavailable
        assert "127.0.0.1" not in caught.value.message
    finally:
        store.close()


def test_the_api_key_is_enforced(qdrant_server_factory: Any) -> None:
    server = qdrant_server_factory(api_key="s3cret")
    store = http_store(server, api_key="s3cret")
    try:
        store.ensure_collection(dense_size=DIMENSION, embedder_id="test/synthetic")
        store.upsert(document_chunks("alpha", "doc.md"))
        assert store.points() == 3
    finally:
        store.close()
    for key in ("wrong", None):
        intruder = http_store(server, api_key=key)
        try:
            with pytest.raises(LorechatError) as caught:
                intruder.documents()
            assert caught.value.code is ErrorCode.index_unavailable
            assert "LORECHAT_INDEX__API_KEY" in caught.value.message
            assert "s3cret" not in caught.value.message
        finally:
            intruder.close()
    with httpx.Client(base_url=server.url, timeout=5) as client:
        assert client.get(f"/collections/{COLLECTION}").status_code == 401
        assert client.get(f"/collections/{COLLECTION}", headers={"api-key": "s3cret"}).status_code == 200
        bearer = {"Authorization": "Bearer s3cret"}
        assert client.get(f"/collections/{COLLECTION}/exists", headers=bearer).status_code == 200
        assert client.get("/healthz").status_code == 200  # health and version need no key, as on Qdrant


# ---- the index outlives the server process -------------------------------------------------------------------


def test_a_restarted_server_serves_what_was_written(qdrant_server_factory: Any, tmp_path: Path) -> None:
    folder = tmp_path / "shared-index"
    first = qdrant_server_factory(folder)
    store = http_store(first)
    store.ensure_collection(dense_size=DIMENSION, embedder_id="test/synthetic", chunking="w1")
    store.upsert(document_chunks("alpha", "doc.md"))
    store.close()
    first.stop()

    # Its own process this time, killed without warning after a write was answered: the WAL keeps it.
    second = qdrant_server_factory(folder, process=True)
    store = http_store(second)
    store.ensure_collection(dense_size=DIMENSION, embedder_id="test/synthetic", chunking="w1")
    assert store.documents()["alpha/doc.md"].chunk_count == 3
    store.upsert(document_chunks("beta", "doc.md"))
    store.close()
    second.kill()

    third = qdrant_server_factory(folder)
    store = http_store(third)
    try:
        store.ensure_collection(dense_size=DIMENSION, embedder_id="test/synthetic", chunking="w1")
        assert {c.creator: c.chunks for c in store.counts()} == {"alpha": 3, "beta": 3}
    finally:
        store.close()


def test_an_outage_is_index_unavailable_then_heals(qdrant_server: QdrantServerDouble) -> None:
    store = http_store(qdrant_server)
    try:
        store.ensure_collection(dense_size=DIMENSION, embedder_id="test/synthetic")
        qdrant_server.fail_next(503, count=1, path="/points")
        with pytest.raises(LorechatError) as caught:
            store.upsert(document_chunks("alpha", "doc.md"))
        assert caught.value.code is ErrorCode.index_unavailable and caught.value.retryable
        store.upsert(document_chunks("alpha", "doc.md"))
        assert store.points() == 3
    finally:
        store.close()


# ---- lorechat on it --------------------------------------------------------------------------------------------


def test_lorechat_ingests_into_the_server_and_answers_from_it(
    lorechat_env: Path, qdrant_server: QdrantServerDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lorechat ingest` of the demo content with `index.kind: server` (from the environment), then `search` and
    `ask`: every chunk is in the double's collection, nothing in an embedded index, and answers come from it."""
    monkeypatch.setenv("LORECHAT_INDEX__KIND", "server")
    monkeypatch.setenv("LORECHAT_INDEX__URL", qdrant_server.url)
    monkeypatch.setenv("LORECHAT_LLM__TIERS", '[{"name": "extractive", "kind": "extractive"}]')
    get_settings.cache_clear()
    runner = CliRunner()
    ingested = runner.invoke(main, ["ingest", str(DEMO_CONTENT), "--json"])
    assert ingested.exit_code == 0, ingested.output
    report = json.loads(ingested.stdout)
    assert report["added"] > 10 and report["failed"] == []

    settings = get_settings()
    assert settings.index.kind == "server"
    assert not (lorechat_env / "index").exists()
    store = ServerStore(qdrant_server.url, None, settings.index.collection, hnsw_ef=128, timeout=5)
    try:
        documents = store.documents()
        assert len(documents) == report["added"]
        assert store.points() == sum(state.chunk_count for state in documents.values())
        assert {state.creator for state in documents.values()} == {"hazel-marsh", "ines-calloway", "tomas-reyes"}
    finally:
        store.close()

    queries_before = sum(r.path.endswith("/points/query") for r in qdrant_server.requests)
    searched = runner.invoke(main, ["search", "What is the Brassard rest?", "--creator", "tomas-reyes", "--json"])
    assert searched.exit_code == 0, searched.output
    hits = json.loads(searched.stdout)
    assert hits and {hit["creator"] for hit in hits} == {"tomas-reyes"}
    assert hits[0]["document_id"] in documents

    asked = runner.invoke(main, ["ask", "What is the Brassard rest?", "--creator", "tomas-reyes"])
    assert asked.exit_code == 0, asked.output
    assert "Sources" in asked.stderr and "[1]" in asked.stdout
    assert re.search(r"brassard", asked.stdout, re.I)
    assert sum(r.path.endswith("/points/query") for r in qdrant_server.requests) >= queries_before + 2

    again = runner.invoke(main, ["ingest", str(DEMO_CONTENT), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["unchanged"] == report["added"]
