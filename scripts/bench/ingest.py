"""Ingest throughput (pipeline vs raw embedder on the same chunks) and the embedding backends side by side.

Part 1, one subprocess per backend (so its peak RSS is its own): after a warm-up, --rounds rounds of
  [raw embed of the chunks' embed texts, full ingest into a fresh Edge shard via pipeline.ingest.ingest]
alternate, so machine noise hits both; the pipeline/raw ratio is the median of the per-round ratios, on wall
time and on process CPU time (user + system, all threads: steadier on a shared machine). Then the demo eval set
is scored with that backend (pipeline.evaluate).
Part 2, one process holding all backends: throughput and single-query latency round-robin, backend after
backend within each round and query, so a busy neighbour slows them all alike.

    .venv/bin/python -m scripts.bench.ingest                 # demo corpus x3, torch / onnx / onnx-int8
    .venv/bin/python -m scripts.bench.ingest --copies 20 --backends torch
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scripts.bench import benchlib

if TYPE_CHECKING:
    from backend.retrieval.embedder import Backend

BACKENDS: tuple[Backend, ...] = ("torch", "onnx", "onnx-int8")


def backend_list(text: str) -> list[Backend]:
    """Comma-separated embedding backends, each one of BACKENDS."""
    known: dict[str, Backend] = {name: name for name in BACKENDS}
    names = [name.strip() for name in text.split(",") if name.strip()]
    if unknown := [name for name in names if name not in known]:
        raise argparse.ArgumentTypeError(f"unknown backends {unknown}: choose from {', '.join(BACKENDS)}")
    return [known[name] for name in names]


def cpu_now() -> float:
    return benchlib.cpu_seconds()


def corpus_texts(corpus: Path) -> list[str]:
    from backend.retrieval.search import embed_text
    from backend.settings import ChunkingSettings
    from pipeline.chunk import chunk_document
    from pipeline.eval_data import load_content

    chunking = ChunkingSettings()
    return [
        embed_text(c)
        for d in load_content(corpus)
        for c in chunk_document(d, size_tokens=chunking.size_tokens, overlap_tokens=chunking.overlap_tokens)
    ]


def worker(backend: Backend, corpus: Path, out: Path, rounds: int) -> None:
    import numpy as np

    from backend.retrieval.embedder import get_embedder
    from backend.retrieval.search import Retriever
    from backend.retrieval.stores.edge import EdgeStore
    from backend.settings import ChunkingSettings, EmbeddingSettings, RetrievalSettings
    from pipeline.eval_data import load_eval_set
    from pipeline.evaluate import evaluate

    chunking = ChunkingSettings()
    embedder = get_embedder(EmbeddingSettings(backend=backend))
    texts = corpus_texts(corpus)
    embedder.embed_documents(texts[:64])  # warm-up: first calls allocate and pick kernels
    rss_loaded = benchlib.peak_rss_mib()
    raw: list[tuple[float, float]] = []
    pipe: list[tuple[float, float]] = []
    written = 0
    vectors = np.empty((0, 0))
    for _ in range(rounds):
        w0, c0 = time.perf_counter(), cpu_now()
        vectors = embedder.embed_documents(texts)
        raw.append((time.perf_counter() - w0, cpu_now() - c0))
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
            store = EdgeStore(Path(tmp) / "index", hnsw_ef=128)
            retriever = Retriever(embedder=embedder, store=store, settings=RetrievalSettings())
            w0, c0 = time.perf_counter(), cpu_now()
            report = benchlib.indexer(retriever, Path(tmp), chunking).ingest([corpus])
            pipe.append((time.perf_counter() - w0, cpu_now() - c0))
            store.close()
        written = report.chunks_written
    rss_ingest = benchlib.peak_rss_mib()
    eval_set = load_eval_set(
        content=benchlib.DEMO_CONTENT,
        queries=benchlib.EVAL_DIR / "queries.jsonl",
        qrels=benchlib.EVAL_DIR / "qrels.tsv",
    )
    quality = evaluate(eval_set, embedder=embedder, chunking=chunking, retrieval=RetrievalSettings(), repeats=5)
    np.save(out.with_suffix(".npy"), vectors)
    n = len(texts)
    out.write_text(
        json.dumps(
            {
                "backend": backend,
                "embedder": embedder.embedder_id,
                "chunks": n,
                "chunks_written": written,
                "raw_wall_cpu_s": raw,
                "pipeline_wall_cpu_s": pipe,
                "raw_chunks_per_s": round(n / statistics.median(w for w, _ in raw), 2),
                "pipeline_chunks_per_s": round(written / statistics.median(w for w, _ in pipe), 2),
                "raw_chunks_per_cpu_s": round(n / statistics.median(c for _, c in raw), 2),
                "pipeline_chunks_per_cpu_s": round(written / statistics.median(c for _, c in pipe), 2),
                "pipeline_vs_raw_wall": round(
                    statistics.median(r[0] / p[0] for r, p in zip(raw, pipe, strict=True)), 4
                ),
                "pipeline_vs_raw_cpu": round(statistics.median(r[1] / p[1] for r, p in zip(raw, pipe, strict=True)), 4),
                "rss_mib_after_model_load": round(rss_loaded, 1),
                "peak_rss_mib_after_ingest": round(rss_ingest, 1),
                "quality": quality.scores,
            }
        )
    )


def duel(backends: list[Backend], texts: list[str], rounds: int) -> dict[str, dict[str, Any]]:
    """Every backend in one process, measured round-robin (the starting backend rotates each round)."""
    from backend.retrieval.embedder import get_embedder
    from backend.settings import EmbeddingSettings

    models = {b: get_embedder(EmbeddingSettings(backend=b)) for b in backends}
    for model in models.values():
        model.embed_documents(texts[:64])
    walls: dict[str, list[float]] = {b: [] for b in backends}
    cpus: dict[str, list[float]] = {b: [] for b in backends}
    for r in range(rounds):
        for b in backends[r % len(backends) :] + backends[: r % len(backends)]:
            w0, c0 = time.perf_counter(), cpu_now()
            models[b].embed_documents(texts)
            walls[b].append(time.perf_counter() - w0)
            cpus[b].append(cpu_now() - c0)
    latency: dict[str, list[float]] = {b: [] for b in backends}
    # Questions new to every model (each serves one it has seen from memory), three passes of the eval set.
    queries = benchlib.NewQuestions()
    for i, q in enumerate(queries.take(3 * len(benchlib.eval_queries()))):
        for b in backends[i % len(backends) :] + backends[: i % len(backends)]:
            t0 = time.perf_counter()
            models[b].embed_query(q)
            latency[b].append(time.perf_counter() - t0)
    return {
        b: {
            "chunks_per_s": round(len(texts) / statistics.median(walls[b]), 2),
            "chunks_per_cpu_s": round(len(texts) / statistics.median(cpus[b]), 2),
            "query_latency": benchlib.summary_ms(latency[b][len(backends) :]),
        }
        for b in backends
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=3, help="Copies of the demo corpus (81 chunks each).")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating measurement rounds.")
    parser.add_argument(
        "--backends", type=backend_list, default=",".join(BACKENDS), help="Comma-separated embedding backends."
    )
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.corpus, args.out, args.rounds)
        return

    backends: list[Backend] = args.backends
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-corpus-") as tmp:
        corpus = Path(tmp) / "content"
        creators = benchlib.replicate_corpus(benchlib.DEMO_CONTENT, corpus, copies=args.copies)
        print(f"corpus: demo x{args.copies} = {len(creators)} creators", file=sys.stderr)
        for backend in backends:
            out = Path(tmp) / f"{backend}.json"
            print(f"[{backend}] pipeline vs raw, quality…", file=sys.stderr)
            cmd = benchlib.module_argv("scripts.bench.ingest", "--worker", backend, "--corpus", str(corpus),
                                       "--out", str(out), "--rounds", str(args.rounds))  # fmt: skip
            subprocess.run(cmd, check=True, cwd=benchlib.REPO)
            results.append(json.loads(out.read_text()))
        _cosines(results, tmp)
        print("backends round-robin in one process…", file=sys.stderr)
        side_by_side = duel(backends, corpus_texts(corpus), args.rounds)
    _report(results, side_by_side, args)


def _cosines(results: list[dict[str, Any]], tmp: str) -> None:
    """Mean cosine of each backend's chunk vectors against torch fp32's, on the same chunks."""
    import numpy as np

    if not any(r["backend"] == "torch" for r in results):
        return
    reference = np.load(Path(tmp) / "torch.npy")
    for r in results:
        vectors = np.load(Path(tmp) / f"{r['backend']}.npy")
        r["mean_cosine_vs_torch"] = round(float(np.mean(np.sum(vectors * reference, axis=1))), 5)


def _report(results: list[dict[str, Any]], duel_results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    benchlib.print_table(
        f"Ingest: demo corpus x{args.copies} ({results[0]['chunks']} chunks), pipeline vs raw embedder "
        f"(medians of {args.rounds} alternating rounds; goal pipeline >= 90% of raw)",
        ["backend", "raw chunks/s", "pipeline chunks/s", "pipeline/raw (wall)", "pipeline/raw (CPU)",
         "peak RSS MiB: model loaded → after ingest"],
        [
            [r["backend"], r["raw_chunks_per_s"], r["pipeline_chunks_per_s"], f"{r['pipeline_vs_raw_wall']:.1%}",
             f"{r['pipeline_vs_raw_cpu']:.1%}",
             f"{r['rss_mib_after_model_load']:.0f} → {r['peak_rss_mib_after_ingest']:.0f}"]
            for r in results
        ],
    )  # fmt: skip
    base = next((r for r in results if r["backend"] == "torch"), results[0])
    base_duel = duel_results[base["backend"]]
    rows, goals = [], {}
    for r in results:
        d = duel_results[r["backend"]]
        speedup = d["chunks_per_s"] / base_duel["chunks_per_s"]
        speedup_cpu = d["chunks_per_cpu_s"] / base_duel["chunks_per_cpu_s"]
        rel = {
            m: (r["quality"][m]["ndcg@10"] - base["quality"][m]["ndcg@10"]) / base["quality"][m]["ndcg@10"]
            for m in ("dense", "hybrid")
        }
        r.update(side_by_side=d, speedup_vs_torch=round(speedup, 3), speedup_vs_torch_cpu=round(speedup_cpu, 3))
        r["ndcg10_rel_delta_vs_torch"] = {m: round(v, 4) for m, v in rel.items()}
        goals[r["backend"]] = bool(speedup >= 2.0 and min(rel.values()) >= -0.01)
        rows.append(
            [r["backend"], d["chunks_per_s"], f"{speedup:.2f}x / {speedup_cpu:.2f}x", d["query_latency"]["p50_ms"],
             d["query_latency"]["p99_ms"], r["quality"]["dense"]["ndcg@10"], r["quality"]["hybrid"]["ndcg@10"],
             f"{rel['dense']:+.2%} / {rel['hybrid']:+.2%}", r.get("mean_cosine_vs_torch", ""),
             "yes" if goals[r["backend"]] else "no"]
        )  # fmt: skip
    benchlib.print_table(
        "Embedding backends round-robin (goal: >= 2x torch chunks/s at <= 1% relative nDCG@10 loss)",
        ["backend", "chunks/s", "vs torch wall / CPU", "query p50 ms", "query p99 ms", "dense nDCG@10",
         "hybrid nDCG@10", "Δ nDCG dense / hybrid", "cos vs torch", "goal"],
        rows,
    )  # fmt: skip
    benchlib.write_results(
        "ingest", {"copies": args.copies, "rounds": args.rounds, "results": results, "backend_goal": goals}
    )


if __name__ == "__main__":
    main()
