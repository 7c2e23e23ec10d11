"""Weighted hybrid fusion (issue 37): Qdrant's DBSF takes no weights, so a list's weight is its prefetch repeated; the
rule that turns weights into repeats, and what the engines make of it (the weighted sum of normalised scores)."""

from __future__ import annotations

import statistics

import pytest

from backend.retrieval.search import Retriever
from backend.retrieval.stores.protocol import MAX_DBSF_REPEATS, Fusion, zscore_fuse
from backend.settings import RetrievalSettings
from backend.stages import Hit


@pytest.mark.parametrize(
    ("dense_weight", "bm25_weight", "repeats"),
    [
        (1.0, 1.0, (1, 1)),
        (2.0, 2.0, (1, 1)),  # equal weights: one prefetch each, never 2 and 2
        (1.5, 1.0, (3, 2)),
        (3.0, 2.0, (3, 2)),
        (2.0, 1.0, (2, 1)),
        (1.0, 2.0, (1, 2)),
        (1.0, 3.0, (1, 3)),
        (1.3, 1.0, (4, 3)),  # the nearest ratio in whole numbers up to the cap
        (10.0, 0.1, (MAX_DBSF_REPEATS, 1)),  # beyond the cap: as far as it goes
    ],
)
def test_dbsf_weights_become_prefetch_repeats(
    dense_weight: float, bm25_weight: float, repeats: tuple[int, int]
) -> None:
    fusion = Fusion(method="dbsf", dense_weight=dense_weight, bm25_weight=bm25_weight)
    assert fusion.prefetch_repeats(has_terms=True) == repeats


def test_rrf_and_termless_queries_send_each_list_once() -> None:
    weighted_rrf = Fusion(method="rrf", dense_weight=1.5, bm25_weight=1.0)
    assert weighted_rrf.prefetch_repeats(has_terms=True) == (1, 1)  # RRF's weights travel as weights
    assert weighted_rrf.weights(has_terms=True) == [1.5, 1.0]
    # A query of stopwords only has no BM25 list: one dense prefetch, whatever the weights.
    assert Fusion(method="dbsf", dense_weight=1.5).prefetch_repeats(has_terms=False) == (1, 0)


def normalised(hits: list[Hit]) -> dict[str, float]:
    """Qdrant's DBSF normalisation of one list: (score - (mean - 3 sd)) / (6 sd), sample sd; 0.5 without spread."""
    scores = [hit.score for hit in hits]
    mean, sd = statistics.fmean(scores), statistics.stdev(scores) if len(scores) > 1 else 0.0
    return {hit.chunk_id: 0.5 if sd == 0 else (hit.score - (mean - 3 * sd)) / (6 * sd) for hit in hits}


@pytest.mark.parametrize(("dense_weight", "bm25_weight"), [(1.5, 1.0), (1.0, 2.0)])
def test_weighted_dbsf_is_the_weighted_sum_of_normalised_scores(
    retriever: Retriever, dense_weight: float, bm25_weight: float
) -> None:
    """Both adapters: the fused score of a chunk is its normalised dense score and its normalised BM25 score, each
    list normalised over the prefetch's candidates, summed in the weights' ratio (1.5 and 1: 3 times and twice)."""
    fusion = Fusion(method="dbsf", dense_weight=dense_weight, bm25_weight=bm25_weight)
    dense_times, bm25_times = fusion.prefetch_repeats(has_terms=True)
    assert dense_times / bm25_times == dense_weight / bm25_weight
    prefetch = 6
    checked = 0
    for query in ("steam in the oven for a crisp crust", "how long should sourdough proof in the fridge"):
        vectors = retriever.query_vectors(query, mode="hybrid")
        dense, bm25 = (
            normalised(retriever.store.search(vectors, k=prefetch, mode=mode, prefetch_limit=prefetch))
            for mode in ("dense", "bm25")
        )
        assert dense and bm25, query
        fused = retriever.store.search(vectors, k=prefetch, mode="hybrid", prefetch_limit=prefetch, fusion=fusion)
        for hit in fused:
            expected = dense_times * dense.get(hit.chunk_id, 0.0) + bm25_times * bm25.get(hit.chunk_id, 0.0)
            assert hit.score == pytest.approx(expected, rel=1e-3, abs=1e-4), (query, hit.chunk_id)
            checked += 1
    assert checked >= prefetch  # not vacuous: the fused lists were checked point by point


def test_zscore_fusion_standardises_weights_and_sums_each_list() -> None:
    """z-score fusion (the default): each list's scores minus its mean over its (population) deviation, weighted and
    summed; a chunk one list did not fetch gets that list's lowest standardised score, not nothing."""
    dense = [(0.9, "a"), (0.8, "b"), (0.4, "c")]  # mean 0.7, deviation 0.2160
    bm25 = [(12.0, "b"), (6.0, "d")]  # mean 9, deviation 3
    fused = dict((chunk, score) for score, chunk in zscore_fuse(dense, bm25, Fusion(dense_weight=1.5)))
    deviation = statistics.pstdev([0.9, 0.8, 0.4])
    z = {chunk: (score - 0.7) / deviation for score, chunk in dense}
    assert fused["a"] == pytest.approx(1.5 * z["a"] + 1.0 * -1.0)  # not fetched by BM25: its lowest, -1
    assert fused["b"] == pytest.approx(1.5 * z["b"] + 1.0 * 1.0)
    assert fused["c"] == pytest.approx(1.5 * z["c"] - 1.0)
    assert fused["d"] == pytest.approx(1.5 * z["c"] - 1.0)  # not fetched by dense: its lowest
    order = [chunk for _, chunk in zscore_fuse(dense, bm25, Fusion(dense_weight=1.5))]
    assert order == ["b", "a", "c", "d"]  # best first, the tie between c and d by chunk id


def test_zscore_fusion_without_terms_or_spread() -> None:
    """A question of stopwords only has no BM25 list: dense's order. A list without spread adds nothing."""
    dense = [(0.9, "a"), (0.5, "b")]
    assert [chunk for _, chunk in zscore_fuse(dense, [], Fusion(method="zscore"))] == ["a", "b"]
    flat = [(3.0, "b"), (3.0, "a")]
    assert [chunk for _, chunk in zscore_fuse(dense, flat, Fusion(method="zscore"))] == ["a", "b"]


def test_zscore_hybrid_is_the_fusion_of_the_two_plain_searches(retriever: Retriever) -> None:
    """Both adapters: hybrid with `zscore` is exactly `zscore_fuse` over the dense and BM25 searches of the same
    candidates, scores included, and the hits carry their payloads."""
    fusion = Fusion(method="zscore", dense_weight=1.5, bm25_weight=1.0)
    prefetch = 6
    checked = 0
    for query in ("steam in the oven for a crisp crust", "how long should sourdough proof in the fridge"):
        vectors = retriever.query_vectors(query, mode="hybrid")
        dense, bm25 = (
            [
                (h.score, h.chunk_id)
                for h in retriever.store.search(vectors, k=prefetch, mode=m, prefetch_limit=prefetch)
            ]
            for m in ("dense", "bm25")
        )
        assert dense and bm25, query
        expected = zscore_fuse(dense, bm25, fusion)[:4]
        fused = retriever.store.search(vectors, k=4, mode="hybrid", prefetch_limit=prefetch, fusion=fusion)
        assert [h.chunk_id for h in fused] == [chunk for _, chunk in expected], query
        for hit, (score, _) in zip(fused, expected, strict=True):
            assert hit.score == pytest.approx(score, rel=1e-6), query
            assert hit.text, query  # read back with its payload
            checked += 1
    assert checked == 8


def test_a_question_naming_code_weighs_bm25_at_code_bm25_weight(retriever: Retriever) -> None:
    """A question naming code ("proof_time": one exact BM25 term, sparse.whole_terms) is fused with BM25 at
    `code_bm25_weight`; any other question at `bm25_weight`. Both adapters: the hybrid search is the store's fusion
    at that weight, not at the plain one."""
    original = retriever.settings
    retriever.settings = RetrievalSettings(k=3, code_bm25_weight=3.0)
    try:
        plain = retriever.fusion_for("how long should sourdough proof in the fridge")
        assert plain == retriever.fusion and plain.bm25_weight == 1.0
        assert retriever.fusion_for("What changed in 8.1?") == plain  # a dotted number is no name
        question = "Which proof_time suits sourdough in the fridge?"
        code = retriever.fusion_for(question)
        assert (code.dense_weight, code.bm25_weight) == (plain.dense_weight, 3.0)
        assert code.prefetch_repeats(has_terms=True) == (1, 2)  # dense 1.5 : BM25 3
        vectors = retriever.query_vectors(question, mode="hybrid")
        hits = retriever.search(question, k=3, mode="hybrid")

        def fused(fusion: Fusion) -> list[tuple[str, float]]:
            found = retriever.store.search(vectors, k=8, mode="hybrid", prefetch_limit=50, fusion=fusion)
            return [
                (h.chunk_id, round(h.score, 4)) for h in retriever.refine(vectors, found, mode="hybrid", fusion=fusion)
            ]

        assert [(h.chunk_id, round(h.score, 4)) for h in hits] == fused(code)[:3]
        assert fused(code)[:3] != fused(plain)[:3]  # the weight changed the scores
    finally:
        retriever.settings = original
