"""STYLE 9: the embedded and the server adapter answer the same queries with the same rankings: the server adapter
in qdrant-client's local mode, and over HTTP against the Qdrant server double (tests/fakes), both under the key
"server" below."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.retrieval.embedder import Embedder
from backend.retrieval.search import Retriever
from backend.retrieval.stores.protocol import Fusion, Store
from backend.settings import RetrievalSettings
from backend.stages import EmbeddedChunk, Hit
from tests.backend.retrieval.conftest import CORPUS, open_adapter

QUERIES = (
    "how long should sourdough proof in the fridge",
    "telescope for galaxies",
    "steam in the oven for a crisp crust",
    "moon craters shadows",
    "feeding flour and water",
    "canary phrase",
)
CREATORS = (None, "baker", "astro", "rival")


def ranking(hits: list[Hit]) -> list[frozenset[str]]:
    """Chunk ids in rank order, exact score ties grouped: engines may break a tie either way."""
    groups: list[tuple[float, set[str]]] = []
    for hit in hits:
        if groups and abs(groups[-1][0] - hit.score) <= 1e-5 * max(1.0, abs(hit.score)):
            groups[-1][1].add(hit.chunk_id)
        else:
            groups.append((hit.score, {hit.chunk_id}))
    return [frozenset(ids) for _, ids in groups]


@pytest.fixture(params=["server", "http"])
def both(
    request: pytest.FixtureRequest, tmp_path: Path, embedder: Embedder, embedded_corpus: list[EmbeddedChunk]
) -> dict[str, Retriever]:
    retrievers = {}
    for key, kind in (("edge", "edge"), ("server", request.param)):
        store: Store = open_adapter(kind, tmp_path, request)
        retrievers[key] = Retriever(embedder=embedder, store=store, settings=RetrievalSettings(k=5))
        store.upsert(embedded_corpus)
    yield retrievers
    for retriever in retrievers.values():
        retriever.store.close()


@pytest.mark.parametrize("mode", ["dense", "bm25"])
def test_same_ranking(both: dict[str, Retriever], mode: str) -> None:
    answered = 0
    for query in QUERIES:
        for creator in CREATORS:
            edge, server = (
                # k covers the whole corpus, so no tie group is cut at the boundary.
                both[kind].search(query, creator=creator, mode=mode, k=len(CORPUS))  # type: ignore[arg-type]
                for kind in ("edge", "server")
            )
            assert ranking(edge) == ranking(server), (query, creator)
            answered += bool(edge)
            assert [h.score for h in edge] == pytest.approx([h.score for h in server], rel=1e-3, abs=1e-4)
    # Not a vacuous pass: most query/creator pairs have matches (bm25 finds none for off-topic creators).
    assert answered >= len(QUERIES) * len(CREATORS) // 2


def test_same_hybrid_top_results(both: dict[str, Retriever]) -> None:
    for query in QUERIES:
        for creator in CREATORS:
            edge, server = (
                both[kind].search(query, creator=creator, mode="hybrid", k=3) for kind in ("edge", "server")
            )
            assert edge, (query, creator)
            assert {h.chunk_id for h in edge} == {h.chunk_id for h in server}, (query, creator)


@pytest.mark.parametrize(
    "fusion",
    [
        Fusion(rrf_k=10),
        Fusion(dense_weight=1.0, bm25_weight=0.5),
        Fusion(method="dbsf"),
        Fusion(method="dbsf", dense_weight=1.5),
        Fusion(method="zscore", dense_weight=1.5),
    ],
    ids=["rrf-k10", "weighted-rrf", "dbsf", "weighted-dbsf", "zscore"],
)
def test_same_hybrid_top_results_for_every_fusion(both: dict[str, Retriever], fusion: Fusion) -> None:
    """Issue 15: every fusion the settings offer means the same in both engines."""
    for query in QUERIES:
        for creator in CREATORS:
            edge, server = (
                [
                    h.chunk_id
                    for h in both[kind].store.search(
                        both[kind].query_vectors(query, mode="hybrid"),
                        k=len(CORPUS),
                        mode="hybrid",
                        creator=creator,
                        fusion=fusion,
                    )
                ]
                for kind in ("edge", "server")
            )
            assert edge, (query, creator)
            assert edge[:2] == server[:2] or set(edge[:3]) == set(server[:3]), (query, creator, edge, server)


def test_fusion_settings_reach_the_engine(both: dict[str, Retriever]) -> None:
    """A weight that silences BM25 ranks hybrid like dense alone (both adapters)."""
    for kind, retriever in both.items():
        retriever.settings = RetrievalSettings(k=5, dense_weight=1.0, bm25_weight=0.001)
        query = "steam in the oven for a crisp crust"
        hybrid = [h.chunk_id for h in retriever.search(query, mode="hybrid")]
        dense = [h.chunk_id for h in retriever.search(query, mode="dense")]
        assert hybrid[:3] == dense[:3], kind
