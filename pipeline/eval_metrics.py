"""Ranking metrics for `lorechat eval`: nDCG@k, Recall@k and MRR@k over document ids, as trec_eval defines them.

Conventions (those of trec_eval / pytrec_eval, which BEIR reports):
- graded relevance, linear gain: a document judged 2 contributes 2 / log2(rank + 1);
- the ideal ranking is every judged document sorted by grade, cut at k;
- a judgement of 0 (or below) means "not relevant": it counts for nothing, not even in Recall's denominator;
- a query without any relevant document is skipped by the caller, not scored 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

METRIC_NAMES = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def dcg(gains: Sequence[float]) -> float:
    return sum(gain / math.log2(rank + 2) for rank, gain in enumerate(gains))


def ndcg_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """Normalized discounted cumulative gain of the first k ids of `ranking`."""
    ideal = dcg(sorted((g for g in judged.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([max(judged.get(doc, 0), 0) for doc in ranking[:k]]) / ideal


def recall_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    relevant = {doc for doc, grade in judged.items() if grade > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def mrr_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant id within the first k; 0 when none is there."""
    for rank, doc in enumerate(ranking[:k], start=1):
        if judged.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def score_query(
    ranking: Sequence[str], judged: Mapping[str, int], *, k: int = 10, deep_k: int = 100
) -> dict[str, float]:
    """Every metric for one query; names follow METRIC_NAMES with k and deep_k substituted."""
    return {
        f"ndcg@{k}": ndcg_at_k(ranking, judged, k),
        f"recall@{k}": recall_at_k(ranking, judged, k),
        f"recall@{deep_k}": recall_at_k(ranking, judged, deep_k),
        f"mrr@{k}": mrr_at_k(ranking, judged, k),
    }


def mean_scores(per_query: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Macro average over queries (each query weighs the same), as BEIR reports."""
    if not per_query:
        return {}
    names = list(per_query[0])
    return {name: sum(scores[name] for scores in per_query) / len(per_query) for name in names}
