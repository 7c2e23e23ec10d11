"""A visitor's question embedded by the fp32 model or by its int8 twin (`embedding.quantized_queries`), side by
side: CPU and latency per query, back to back and after idle, and retrieval quality on both eval sets.

The index is fp32 either way (documents are embedded by the fp32 model); only the question's vector changes. Two
real Embedders (the default onnx backend, the bundled model, one core a query as in the service) embed the demo
eval set's questions one at a time, alternating rounds so a noisy neighbour hits both; "after idle" sleeps
100 ms before each question, as a service between visitors does (cold caches: the weights are read from memory
again, which is where int8's 4x smaller weights help most). Then `lorechat eval`'s scoring (pipeline/evaluate.py)
ranks the demo set and the PostgreSQL-manual set (built from Debian's postgresql-doc-15) with each.

    .venv/bin/python -m scripts.bench.query_precision
    .venv/bin/python -m scripts.bench.query_precision --rounds 3 --no-quality
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from backend.retrieval.embedder import Embedder
from backend.settings import EmbeddingSettings, Settings
from pipeline.eval_data import EvalSet, load_eval_set
from pipeline.eval_pgdocs import DEFAULT_HTML, build
from pipeline.evaluate import evaluate
from scripts.bench import benchlib

EVAL = benchlib.REPO / "examples" / "eval"


def eval_sets(work: Path) -> dict[str, EvalSet]:
    sets = {
        "demo": load_eval_set(
            queries=EVAL / "queries.jsonl", qrels=EVAL / "qrels.tsv", content=benchlib.REPO / "examples" / "content"
        )
    }
    if (DEFAULT_HTML / "index.html").is_file():
        build(DEFAULT_HTML, work / "pgdocs")
        sets["pgdocs"] = load_eval_set(
            queries=EVAL / "pgdocs" / "queries.jsonl", qrels=EVAL / "pgdocs" / "qrels.tsv", content=work / "pgdocs"
        )
    else:
        print("postgresql-doc-15 is not installed: the pgdocs set is left out", file=sys.stderr)
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds per condition.")
    parser.add_argument("--queries", type=int, default=100, help="Queries per round.")
    parser.add_argument("--no-quality", action="store_true", help="Skip the eval sets (speed only).")
    args = parser.parse_args()
    questions = benchlib.NewQuestions()  # each model embeds a question once: one it has seen costs it nothing
    warm_up = questions.take(20)
    embedders = {
        "fp32": Embedder(EmbeddingSettings(threads=1, quantized_queries=False)),
        "int8 twin": Embedder(EmbeddingSettings(threads=1, quantized_queries=True)),
    }
    names = {name: embedder.query_precision for name, embedder in embedders.items()}
    for embedder in embedders.values():
        benchlib.embed_one_at_a_time(embedder, warm_up)
    results: dict[str, Any] = {"machine": benchlib.machine(), "settings": vars(args), "precision": names}
    rows = []
    for condition, idle in (("back to back", 0.0), ("after 100 ms idle", 0.1)):
        cpu = dict.fromkeys(embedders, 0.0)
        latencies: dict[str, list[float]] = {name: [] for name in embedders}
        for _ in range(args.rounds):
            queries = questions.take(args.queries)
            for name, embedder in embedders.items():
                spent, times = benchlib.embed_one_at_a_time(embedder, queries, idle=idle)
                cpu[name] += spent
                latencies[name] += times
        total = args.rounds * args.queries
        baseline = cpu["fp32"] / total
        results[condition] = {}
        for name in embedders:
            per_query = cpu[name] / total
            latency = benchlib.summary_ms(latencies[name])
            results[condition][name] = {"cpu_ms_per_query": round(per_query * 1000, 3), "latency": latency}
            rows.append(
                [condition, names[name], f"{per_query * 1000:.2f}", f"{per_query / baseline:.2f}×", latency["p50_ms"],
                 latency["p99_ms"]]
            )  # fmt: skip
    benchlib.print_table(
        f"Question embedding, one core ({args.rounds} × {args.queries} queries each, alternating)",
        ["condition", "question model", "CPU ms / query", "CPU vs fp32", "p50 ms", "p99 ms"],
        rows,
    )
    if not args.no_quality:
        settings = Settings()
        quality_rows = []
        results["quality"] = {}
        with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
            for set_name, eval_set in eval_sets(Path(tmp)).items():
                scores = {}
                for name, embedder in embedders.items():
                    report = evaluate(
                        eval_set,
                        embedder=embedder,
                        chunking=settings.chunking,
                        retrieval=settings.retrieval,
                        modes=("dense", "hybrid"),
                        repeats=3,
                    )
                    scores[name] = {mode: report.scores[mode]["ndcg@10"] for mode in ("dense", "hybrid")}
                results["quality"][set_name] = scores
                for mode in ("dense", "hybrid"):
                    fp32, int8 = scores["fp32"][mode], scores["int8 twin"][mode]
                    quality_rows.append(
                        [set_name, mode, f"{fp32:.4f}", f"{int8:.4f}", f"{(int8 - fp32) / fp32 * 100:+.2f} %"]
                    )
        benchlib.print_table(
            "nDCG@10, fp32 index, question embedded by each (3 repeats averaged)",
            ["eval set", "mode", names["fp32"], names["int8 twin"], "change"],
            quality_rows,
        )
    benchlib.write_results("query_precision", results)


if __name__ == "__main__":
    main()
