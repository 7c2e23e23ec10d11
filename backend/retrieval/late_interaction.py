"""Late interaction over the sentence vectors stored at ingest: hybrid's fused candidates re-scored by their best
sentence.

A chunk's dense vector averages everything the chunk says, and BM25 counts words wherever they stand; a question is
usually answered by one sentence. The fused top candidates (`retrieval.sentence_candidates`) get a third list,
each chunk's best cosine between the question and one of its sentences (vectors stored with the chunk: no model
runs here), fused the way the other two were: normalised (DBSF, the default: mean ± 3 standard deviations, clamped
to 0..1) or standardised (zscore, an opt-in) and added at `retrieval.sentence_weight` in the units of
`dense_weight` and `bm25_weight`; RRF adds its weighted reciprocal rank. Chosen across the five eval sets by the
rule in BENCHMARKS.md ("Retrieval quality").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from backend.retrieval.packed_vectors import unpack_vectors
from backend.retrieval.stores.protocol import Fusion
from backend.stages import Hit


def best_sentence_cosines(hits: Sequence[Hit], query: np.ndarray) -> list[float | None]:
    """Per hit, the best cosine between the (unit) query and one of its stored sentences; None without them."""
    best: list[float | None] = []
    for hit in hits:
        matrix = unpack_vectors(hit.sentence_vectors) if hit.sentence_vectors else None
        best.append(float((matrix @ query).max()) if matrix is not None and matrix.shape[1] == query.shape[0] else None)
    return best


def rescore(
    hits: Sequence[Hit], query: Sequence[float], *, fusion: Fusion, weight: float, has_terms: bool
) -> list[Hit]:
    """`hits` (one fused list, any order) with the sentence list fused into their scores. Unchanged when fewer than
    two hits carry sentence vectors (an index made without them) or the weight is 0; a hit without them gets the
    list's lowest value (DBSF) or no share (RRF)."""
    vector = np.asarray(query, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    if weight <= 0 or norm == 0 or len(hits) < 2:
        return list(hits)
    best = best_sentence_cosines(hits, vector / norm)
    known = np.asarray([value for value in best if value is not None], dtype=np.float64)
    if len(known) < 2:
        return list(hits)
    if fusion.method == "zscore":
        # Standardised like the other two lists (protocol.zscore_fuse), at `weight` in dense_weight's units, counted
        # from the list's lowest (a hit without sentence vectors gets that): every share is >= 0, as DBSF's are.
        spread = float(known.std())
        if spread <= 0:
            return list(hits)
        lowest = float(known.min())
        shares = [0.0 if value is None else (value - lowest) / spread for value in best]
        return [
            dataclasses.replace(hit, score=hit.score + weight * share) for hit, share in zip(hits, shares, strict=True)
        ]
    if fusion.method == "dbsf":
        # The engine's fused score sums each list's normalised score once per repeat of its prefetch; weights are
        # repeats over dense_weight (3 repeats for 1.5), so the sentence list's weight is scaled the same way.
        dense_repeats, _ = fusion.prefetch_repeats(has_terms=has_terms)
        scale = weight * dense_repeats / fusion.dense_weight
        low, spread = known.mean() - 3 * known.std(), 6 * known.std()
        if spread <= 0:
            return list(hits)
        floor = float(np.clip((known.min() - low) / spread, 0.0, 1.0))
        shares = [floor if value is None else float(np.clip((value - low) / spread, 0.0, 1.0)) for value in best]
        return [
            dataclasses.replace(hit, score=hit.score + scale * share) for hit, share in zip(hits, shares, strict=True)
        ]
    order = sorted((i for i, value in enumerate(best) if value is not None), key=lambda i: (-(best[i] or 0.0), i))
    rank = {i: position + 1 for position, i in enumerate(order)}
    return [
        dataclasses.replace(hit, score=hit.score + (1.0 / (fusion.rrf_k - 1 + rank[i] / weight) if i in rank else 0.0))
        for i, hit in enumerate(hits)
    ]
