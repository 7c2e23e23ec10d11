"""A visitor's query embedding on one core or split across several: CPU and latency per query, side by side.

`embedding.threads` (0: automatic) gives the service one ONNX Runtime intra-op thread a model call. This measures
why: the real Embedder (the default backend, the bundled model; questions through its int8 twin unless
`embedding.quantized_queries` is off, the query_precision bench) embeds the eval set's questions one at a time, as
the service does, with each thread count in turn, alternating rounds so a noisy neighbour hits all of them; once
at idle and once with another process keeping one core busy (the service's event loop relaying streams).

    .venv/bin/python -m scripts.bench.query_threads
    .venv/bin/python -m scripts.bench.query_threads --threads 1,2 --rounds 3 --queries 200
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

from backend.retrieval.embedder import Embedder
from backend.settings import EmbeddingSettings
from scripts.bench import benchlib

BUSY_LOOP = "while True: pass"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default=f"1,{os.cpu_count() or 1}", help="Comma-separated thread counts.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds per condition.")
    parser.add_argument("--queries", type=int, default=200, help="Queries per round.")
    parser.add_argument("--backend", default="onnx", help="embedding.backend (default: the default, onnx).")
    args = parser.parse_args()
    counts = [int(part) for part in args.threads.split(",")]
    questions = benchlib.NewQuestions()  # each model embeds a question once: one it has seen costs it nothing
    warm_up = questions.take(20)
    embedders = {n: Embedder(EmbeddingSettings(backend=args.backend, threads=n)) for n in counts}
    for embedder in embedders.values():
        benchlib.embed_one_at_a_time(embedder, warm_up)
    results: dict[str, Any] = {"machine": benchlib.machine(), "settings": vars(args), "conditions": {}}
    rows = []
    for condition in ("idle", "one core busy"):
        busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if condition != "idle" else None
        try:
            cpu = dict.fromkeys(counts, 0.0)
            latencies: dict[int, list[float]] = {n: [] for n in counts}
            for _ in range(args.rounds):
                queries = questions.take(args.queries)
                for n, embedder in embedders.items():
                    spent, times = benchlib.embed_one_at_a_time(embedder, queries)
                    cpu[n] += spent
                    latencies[n] += times
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        total = args.rounds * args.queries
        baseline = cpu[counts[0]] / total
        figures = {}
        for n in counts:
            per_query = cpu[n] / total
            latency = benchlib.summary_ms(latencies[n])
            figures[n] = {"cpu_ms_per_query": round(per_query * 1000, 3), "latency": latency}
            rows.append(
                [
                    condition,
                    n,
                    f"{per_query * 1000:.2f}",
                    f"{per_query / baseline:.2f}×",
                    latency["p50_ms"],
                    latency["p99_ms"],
                ]
            )
        results["conditions"][condition] = figures
    benchlib.print_table(
        f"Query embedding ({args.backend}, {args.rounds} × {args.queries} queries a thread count, alternating)",
        ["condition", "threads", "CPU ms / query", f"CPU vs {counts[0]} thread(s)", "p50 ms", "p99 ms"],
        rows,
    )
    benchlib.write_results("query_threads", results)


if __name__ == "__main__":
    main()
