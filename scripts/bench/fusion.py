"""Hybrid tuning on two eval sets (demo, PostgreSQL manual): chunk fitting and fusion.

Per eval set and per index variant (chunks fitted to the model's window, or cut in cl100k tokens only as before
issue 15) one index is built; every fusion setting is then ranked on the fitted one:
  - in the engine (both adapters support these): RRF with k in --rrf-k, weighted RRF (dense, bm25 weights),
    Qdrant's DBSF (`retrieval.fusion`'s default), and the prefetch sizes in --prefetch; z-score fusion (fused
    client-side by both adapters: stores/protocol.py);
  - client-side over the dense and BM25 candidate lists (not in the engines): convex combinations
    alpha * dense + (1 - alpha) * bm25 of per-query min-max or z-score normalised scores.
The fitted index is built twice on the demo set (--second-build: on every set) to measure run-to-run noise.
Figures: nDCG@10, MRR@10, Recall@10/100 per mode; per-query MRR@10 differences against the default before issue 15
(cl100k-only chunks, RRF k=60) get a paired bootstrap 95 % interval. (The embed-text prefix variants measured here
once are in BENCHMARKS.md, "Retrieval quality": the shipped prefix stays.)

    scripts/build-eval-pgdocs                              # once: the PostgreSQL corpus (git-ignored)
    .venv/bin/python -m scripts.bench.fusion               # ~10 min on 2 cores
    .venv/bin/python -m scripts.bench.fusion --sets demo --quick
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scripts.bench import benchlib

PGDOCS = benchlib.REPO / "examples" / "eval" / "pgdocs"
DEEP_CHUNKS = 400
ENGINE_WEIGHTS = [(1.0, 0.5), (1.0, 0.75), (0.75, 1.0), (0.5, 1.0), (1.0, 1.5), (1.5, 1.0)]
ALPHAS = [0.3, 0.5, 0.7]


def eval_sets(names: Sequence[str]) -> dict[str, Any]:
    from pipeline.eval_data import load_eval_set

    sets = {}
    if "demo" in names:
        sets["demo"] = load_eval_set(
            content=benchlib.DEMO_CONTENT,
            queries=benchlib.EVAL_DIR / "queries.jsonl",
            qrels=benchlib.EVAL_DIR / "qrels.tsv",
        )
    if "pgdocs" in names:
        if not (PGDOCS / "content").is_dir():
            raise SystemExit("run scripts/build-eval-pgdocs first (builds examples/eval/pgdocs/content)")
        sets["pgdocs"] = load_eval_set(
            content=PGDOCS / "content", queries=PGDOCS / "queries.jsonl", qrels=PGDOCS / "qrels.tsv"
        )
    return sets


def build_index(eval_set: Any, *, embedder: Any, fitted: bool, root: Path) -> Any:
    """A fresh Edge index of the set's documents; chunks fitted to the model window or cut in cl100k only."""
    from backend.retrieval.search import Retriever
    from backend.retrieval.stores.edge import EdgeStore
    from backend.settings import RetrievalSettings
    from pipeline.chunk import chunk_document
    from pipeline.ingest import BatchWriter
    from pipeline.progress import Progress

    store = EdgeStore(root, hnsw_ef=128)
    retriever = Retriever(embedder=embedder, store=store, settings=RetrievalSettings())
    writer = BatchWriter(retriever=retriever, store=store, dry_run=False, progress=Progress(), sentence_vectors=False)
    for document in eval_set.documents:
        window = embedder if fitted else None
        writer.add(chunk_document(document, size_tokens=256, overlap_tokens=32, window=window))
    writer.flush()
    return retriever, writer.written


def client_fused(dense: list[Any], bm25: list[Any], *, alpha: float, norm: str) -> list[Any]:
    """alpha * norm(dense) + (1 - alpha) * norm(bm25); a chunk missing from a list gets that list's floor."""

    def normalised(hits: list[Any]) -> tuple[dict[str, float], float]:
        if not hits:
            return {}, 0.0
        scores = [h.score for h in hits]
        if norm == "minmax":
            low, span = min(scores), (max(scores) - min(scores)) or 1.0
            return {h.chunk_id: (h.score - low) / span for h in hits}, 0.0
        mean, sd = statistics.fmean(scores), (statistics.pstdev(scores) or 1.0)
        values = {h.chunk_id: (h.score - mean) / sd for h in hits}
        return values, min(values.values())

    d, d_floor = normalised(dense)
    b, b_floor = normalised(bm25)
    by_id = {h.chunk_id: h for h in [*dense, *bm25]}
    fused = {cid: alpha * d.get(cid, d_floor) + (1 - alpha) * b.get(cid, b_floor) for cid in by_id}
    return sorted(by_id.values(), key=lambda h: (-fused[h.chunk_id], h.chunk_id))


def rank(
    retriever: Any, vectors: dict[str, Any], eval_set: Any, *, setting: dict[str, Any]
) -> dict[str, dict[str, list[str]]]:
    """mode -> query id -> document ranking (top `prefetch` chunks, then a deep search appending new documents)."""
    from backend.retrieval.search import in_rank_order
    from backend.retrieval.stores.protocol import Fusion
    from pipeline.evaluate import documents_by_best_chunk

    prefetch = setting.get("prefetch", 50)
    fusion = setting.get("fusion", Fusion())
    convex = setting.get("convex")
    out: dict[str, dict[str, list[str]]] = {"bm25": {}, "dense": {}, "hybrid": {}}
    store = retriever.store
    for qid, vec in vectors.items():
        creator = eval_set.query_creators.get(qid)
        lists: dict[str, list[list[Any]]] = {}
        for mode in ("bm25", "dense"):
            lists[mode] = [
                in_rank_order(store.search(vec, k=n, mode=mode, creator=creator, prefetch_limit=n))
                for n in (prefetch, DEEP_CHUNKS)
            ]
            out[mode][qid] = documents_by_best_chunk([*lists[mode][0], *lists[mode][1]])
        if convex:
            alpha, norm = convex
            hybrid = [client_fused(lists["dense"][i], lists["bm25"][i], alpha=alpha, norm=norm) for i in (0, 1)]
        else:
            hybrid = [
                in_rank_order(store.search(vec, k=n, mode="hybrid", creator=creator, prefetch_limit=n, fusion=fusion))
                for n in (prefetch, DEEP_CHUNKS)
            ]
        out["hybrid"][qid] = documents_by_best_chunk([*hybrid[0], *hybrid[1]])
    return out


def last_hybrid(retriever: Any, vectors: dict[str, Any], eval_set: Any) -> list[tuple[str, list[str]]]:
    """Default hybrid rankings, for reading the misses."""
    hybrid = rank(retriever, vectors, eval_set, setting={})["hybrid"]
    return sorted(hybrid.items())


def score(eval_set: Any, ranking: dict[str, dict[str, list[str]]]) -> tuple[dict[str, Any], dict[str, float]]:
    from pipeline.eval_metrics import mean_scores, score_query

    queries = eval_set.judged_queries()
    per_mode = {}
    hybrid_mrr = {}
    for mode, by_query in ranking.items():
        per_query = {q: score_query(by_query[q], eval_set.qrels[q]) for q in queries}
        per_mode[mode] = {k: round(v, 4) for k, v in mean_scores(list(per_query.values())).items()}
        if mode == "hybrid":
            hybrid_mrr = {q: s["mrr@10"] for q, s in per_query.items()}
    return per_mode, hybrid_mrr


def bootstrap(a: dict[str, float], b: dict[str, float], *, rounds: int = 2000) -> tuple[float, float, float]:
    """Mean of b - a over queries, with a paired bootstrap 95 % interval."""
    diffs = [b[q] - a[q] for q in a]
    rng = random.Random(15)
    means = sorted(statistics.fmean(rng.choices(diffs, k=len(diffs))) for _ in range(rounds))
    return statistics.fmean(diffs), means[int(rounds * 0.025)], means[int(rounds * 0.975)]


def fusion_settings(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    from backend.retrieval.stores.protocol import Fusion

    settings: list[tuple[str, dict[str, Any]]] = [
        ("RRF k=60", {}),
        ("DBSF (the default)", {"fusion": Fusion(method="dbsf")}),
        ("z-score dense 1.5", {"fusion": Fusion(method="zscore", dense_weight=1.5)}),
    ]
    if args.quick:
        return settings
    settings += [(f"RRF k={k}", {"fusion": Fusion(rrf_k=k)}) for k in args.rrf_k if k != 60]
    settings += [(f"RRF k=60 prefetch {p}", {"prefetch": p}) for p in args.prefetch if p != 50]
    settings += [
        (f"weighted RRF dense {d} / bm25 {b}", {"fusion": Fusion(dense_weight=d, bm25_weight=b)})
        for d, b in ENGINE_WEIGHTS
    ]
    settings += [
        (f"convex {norm} alpha(dense)={a}", {"convex": (a, norm)}) for norm in ("minmax", "zscore") for a in ALPHAS
    ]
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="demo,pgdocs", help="Eval sets: demo, pgdocs.")
    parser.add_argument("--rrf-k", type=lambda s: [int(x) for x in s.split(",")], default=[10, 30, 60, 100])
    parser.add_argument("--prefetch", type=lambda s: [int(x) for x in s.split(",")], default=[20, 50, 100])
    parser.add_argument("--quick", action="store_true", help="RRF k=60 and DBSF only.")
    parser.add_argument("--second-build", action="store_true", help="Build the fitted index twice on every set.")
    args = parser.parse_args()

    from backend.retrieval.embedder import get_embedder
    from backend.settings import EmbeddingSettings

    embedder = get_embedder(EmbeddingSettings())
    sets = eval_sets(args.sets.split(","))
    variants = [("fitted", 0), ("fitted", 1), ("cl100k only", 0)]
    rows: list[dict[str, Any]] = []
    for set_name, eval_set in sets.items():
        baseline: dict[str, float] = {}
        for chunking, run in variants:
            if run and set_name != "demo" and not args.second_build:
                continue  # below 5,000 chunks Edge searches exactly: a 2nd build only repeats itself
            tmp = Path(tempfile.mkdtemp(prefix="bench-fusion-"))
            try:
                retriever, chunks = build_index(
                    eval_set, embedder=embedder, fitted=chunking == "fitted", root=tmp / "index"
                )
                vectors = {
                    qid: retriever.query_vectors(text, mode="hybrid") for qid, text in eval_set.judged_queries().items()
                }
                is_default = chunking == "fitted" and run == 0
                for name, setting in fusion_settings(args) if is_default else fusion_settings(args)[:1]:
                    scores, mrr = score(eval_set, rank(retriever, vectors, eval_set, setting=setting))
                    if chunking == "cl100k only" and not setting:
                        baseline = mrr  # the default before issue 15
                    row = {
                        "set": set_name,
                        "chunks": chunks,
                        "chunking": chunking,
                        "run": run,
                        "fusion": name,
                        **{f"{m}_{k}": v for m, s in scores.items() for k, v in s.items()},
                        "_mrr": mrr,
                    }
                    if is_default and not setting:
                        row["top5"] = {q: ranking[:5] for q, ranking in last_hybrid(retriever, vectors, eval_set)}
                    rows.append(row)
                    print({k: v for k, v in row.items() if k != "_mrr"}, file=sys.stderr, flush=True)
                retriever.store.close()
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        for row in rows:
            if row["set"] == set_name and baseline:
                row["mrr_vs_before"] = [round(x, 4) for x in bootstrap(baseline, row["_mrr"])]

    table = []
    for r in rows:
        best_single = max(r["bm25_mrr@10"], r["dense_mrr@10"])
        delta = r.get("mrr_vs_before", [0, 0, 0])
        table.append(
            [
                r["set"],
                r["chunking"] + (" (2nd build)" if r["run"] else ""),
                r["chunks"],
                r["fusion"],
                r["bm25_mrr@10"],
                r["dense_mrr@10"],
                r["hybrid_mrr@10"],
                f"{r['hybrid_mrr@10'] - best_single:+.4f}",
                r["hybrid_ndcg@10"],
                r["hybrid_recall@10"],
                r["hybrid_recall@100"],
                f"{delta[0]:+.4f} [{delta[1]:+.3f}, {delta[2]:+.3f}]",
            ]
        )
    benchlib.print_table(
        "MRR@10 (hybrid nDCG@10, R@10, R@100) per index and fusion; last column: hybrid MRR@10 minus the default "
        "before issue 15 (cl100k-only chunks, RRF k=60) with a paired bootstrap 95 % interval",
        ["set", "index", "chunks", "fusion", "bm25", "dense", "hybrid", "hyb − best", "nDCG", "R@10", "R@100", "Δ"],
        table,
    )
    for r in rows:
        r.pop("_mrr", None)
    benchlib.write_results("fusion", {"machine": benchlib.machine(), "rows": rows})


if __name__ == "__main__":
    main()
