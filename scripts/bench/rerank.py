"""Late interaction's candidates and weight on every retrieval eval set, in seconds a variant (issue 37).

Each set is indexed once (chunks with their sentence vectors, as ingest stores them) and every judged question
searched once, hybrid as the engine fuses it (the `prefetch_limit` top, then a deeper search for Recall@100's
documents, as `lorechat eval` ranks). Every (candidates, weight) pair then re-scores the fused top with
`late_interaction.rescore`, the function the service calls, and the documents are scored as `pipeline/evaluate.py`
scores them. The first pair is the baseline the rule (BENCHMARKS.md: the mean rises, no set loses more than 0.01)
is applied against; weight 0 is fusion alone.

    .venv/bin/python -m scripts.bench.rerank                                   # the default grid, ~4 min
    .venv/bin/python -m scripts.bench.rerank --grid 8/0,8/1.25,30/1.25 --sets demo,handbook
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.retrieval.embedder import get_embedder
from backend.retrieval.late_interaction import rescore
from backend.retrieval.models import QueryVectors
from backend.retrieval.search import Retriever, in_rank_order
from backend.retrieval.stores.edge import EdgeStore
from backend.retrieval.stores.protocol import Fusion
from backend.settings import get_settings
from backend.stages import Hit
from pipeline.eval_data import load_eval_set
from pipeline.eval_metrics import score_query
from pipeline.eval_sets import SETS
from pipeline.evaluate import documents_by_best_chunk, index_documents
from scripts.bench import benchlib
from scripts.bench.quality import keeps

DEFAULT_GRID = "8/0,8/1.25,8/2,12/1.25,20/1.25,30/1.25,30/2"
DEEP_CHUNKS = 400


@dataclass(frozen=True, slots=True)
class Searched:
    qrels: dict[str, int]
    vectors: QueryVectors
    fusion: Fusion  # the question's own (Retriever.fusion_for: BM25 weighted up when it names code)
    top: list[Hit]  # the engine's fused top (prefetch_limit), with sentence vectors
    deep: list[Hit]  # a deeper search, for the documents past the top


def search_set(name: str, retriever_settings: Any, embedder: Any, chunking: Any, hnsw_ef: int) -> list[Searched]:
    shipped = SETS[name]
    eval_set = load_eval_set(content=shipped.ensure_content(), queries=shipped.queries, qrels=shipped.qrels)
    with tempfile.TemporaryDirectory(prefix="bench-rerank-") as work:
        store = EdgeStore(Path(work) / "index", hnsw_ef=hnsw_ef)
        try:
            retriever = Retriever(embedder=embedder, store=store, settings=retriever_settings)
            index_documents(eval_set, retriever=retriever, chunking=chunking)
            prefetch = retriever_settings.prefetch_limit
            searched = []
            for qid, text in eval_set.judged_queries().items():
                vectors = retriever.query_vectors(text, mode="hybrid")
                creator, fusion = eval_set.query_creators.get(qid), retriever.fusion_for(text)
                top, deep = (
                    store.search(vectors, k=k, mode="hybrid", creator=creator, prefetch_limit=k, fusion=fusion)
                    for k in (prefetch, DEEP_CHUNKS)
                )
                searched.append(Searched(eval_set.qrels[qid], vectors, fusion, in_rank_order(top), in_rank_order(deep)))
            return searched
        finally:
            store.close()


def score(searched: list[Searched], *, candidates: int, weight: float) -> dict[str, float]:
    """Mean MRR@10 and nDCG@10 with the fused top `candidates` re-scored at `weight` (0: fusion alone)."""
    per_query = []
    for s in searched:
        head, tail = s.top[:candidates], s.top[candidates:]
        if weight > 0:
            fused = rescore(
                head, s.vectors.dense, fusion=s.fusion, weight=weight, has_terms=bool(s.vectors.sparse.indices)
            )
            head = in_rank_order(fused)
        ranking = documents_by_best_chunk([*head, *tail, *s.deep])
        per_query.append(score_query(ranking, s.qrels, k=10, deep_k=100))
    return {m: statistics.fmean(q[m] for q in per_query) for m in ("mrr@10", "ndcg@10")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="demo,pgdocs,gitdocs,handbook,debref", help="Comma-separated set names.")
    parser.add_argument("--grid", default=DEFAULT_GRID, help="candidates/weight pairs; the first is the baseline.")
    args = parser.parse_args()
    names = args.sets.split(",")
    unknown = [name for name in names if name not in SETS]
    if unknown:
        raise SystemExit(f"unknown sets {unknown}; known: {', '.join(SETS)}")
    grid = [(int(c), float(w)) for c, w in (pair.split("/") for pair in args.grid.split(","))]
    settings = get_settings()
    # Sentence vectors stored with every chunk, whatever the pair: the eval indexer writes them only when ranking
    # reads them.
    retrieval = settings.retrieval.model_copy(update={"sentence_weight": max(1.0, settings.retrieval.sentence_weight)})
    embedder = get_embedder(settings.embedding)
    searched = {}
    for name in names:
        print(f"[{name}] indexing and searching…", file=sys.stderr, flush=True)
        searched[name] = search_set(name, retrieval, embedder, settings.chunking, settings.index.hnsw_ef)
    scored = {
        pair: {name: score(s, candidates=pair[0], weight=pair[1]) for name, s in searched.items()} for pair in grid
    }
    base = scored[grid[0]]
    rows = []
    for pair, per_set in scored.items():
        gains = {name: per_set[name]["mrr@10"] - base[name]["mrr@10"] for name in names}
        verdict = "base" if pair == grid[0] else ("keep" if keeps(gains) else "reject")
        rows.append(
            [f"{pair[0]} / {pair[1]:g}"]
            + [f"{per_set[n]['mrr@10']:.3f} / {per_set[n]['ndcg@10']:.3f}" for n in names]
            + [f"{statistics.fmean(per_set[n]['mrr@10'] for n in names):.4f}", verdict]
        )
    benchlib.print_table(
        "Hybrid MRR@10 / nDCG@10 per late-interaction candidates / weight (the rule on MRR against the first)",
        ["candidates / weight", *names, "mean MRR", "verdict"],
        rows,
    )
    benchlib.write_results(
        "rerank",
        {f"{c}/{w:g}": {n: v for n, v in per_set.items()} for (c, w), per_set in scored.items()},
    )


if __name__ == "__main__":
    main()
