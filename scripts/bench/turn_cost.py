"""What one chat turn costs the service apart from its tokens: CPU per turn with one-token answers.

A turn's own work (the request, history, retrieval, the database writes, the answer checks, the upstream request)
is paid once per answer; the `chat` bench spreads it over 2,200-token answers, where it hides in µs per token.
Here every answer is a few tokens, so the service's CPU per turn is that work, measured directly: the same two
processes as `chat` (scripted upstream, the service with the demo corpus), then `--turns` turns with
`--concurrency` in flight, once with the demo set's questions repeating (as `chat` asks them) and once with a
question no earlier turn asked (every retrieval embeds; the answers are too short to hold a claim, so the claim
check's cost, which grows with the answer, stays in `chat --novel`).

With `--against DIR` (another checkout, set up with scripts/setup, e.g. a clean clone of an earlier commit) its
service runs beside this one, each on its own copy of the ingested data, and the turns alternate between the two in
`--rounds` rounds: both see the same neighbours' load, and each one's CPU is counted over its own rounds only.

    .venv/bin/python -m scripts.bench.turn_cost
    .venv/bin/python -m scripts.bench.turn_cost --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/lorechat_bench
    .venv/bin/python -m scripts.bench.turn_cost --phases repeating --against /tmp/base --turns 3000
    .venv/bin/python -m scripts.bench.turn_cost --phases repeating --redis-url redis://127.0.0.1:6379/3
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scripts.bench import benchlib
from scripts.bench.proc_cpu import ProcWatch
from scripts.bench.streamlib import (
    SOURCES_MARK,
    TOKEN_MARK,
    chat_body,
    free_port,
    ingest_demo,
    outcome,
    serve_service,
    serve_upstream,
    start_service,
    start_upstream,
    stop,
    stream_once,
)

_SELF = "scripts.bench.turn_cost"  # this bench, run again as the upstream's and the services' processes
_CREATORS = ["hazel-marsh", "ines-calloway", "tomas-reyes"]
_ANSWER_TOKENS = 2200  # bench chat's answers at 1,000 streams: what a turn's cost is spread over there


async def _turns(port: int, first: int, n: int, concurrency: int, *, novel: bool) -> dict[str, Any]:
    questions = benchlib.eval_queries()
    numbers = iter(range(first, first + n))
    outcomes: dict[str, int] = {}
    seconds: list[float] = []

    async def worker() -> None:
        for i in numbers:
            started = time.perf_counter()
            result = await stream_once(
                port,
                "/api/v1/chat",
                chat_body(i, questions, _CREATORS, novel=novel),
                {"src": SOURCES_MARK, "tok": TOKEN_MARK},
            )
            seconds.append(time.perf_counter() - started)
            key = outcome(result, "tok")
            outcomes[key] = outcomes.get(key, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"outcomes": outcomes, "seconds": seconds}


def _service_bench(checkout: Path | None) -> list[str]:
    """The command line of this bench in `checkout` (None: this one), whose service role serves its code: a module
    since scripts/bench became a package, a script before (a checkout of an earlier commit)."""
    if checkout is None or (checkout / "scripts" / "bench" / "turn_cost.py").is_file():
        return benchlib.module_argv(_SELF)
    return [sys.executable, str(checkout / "scripts" / "bench" / "turn_cost")]


def _merged(rounds: list[dict[str, Any]], service_cpu: float, upstream_cpu: float) -> dict[str, Any]:
    """One service's rounds as one result: outcomes summed, latency over every turn, CPU per turn."""
    turns = sum(sum(r["outcomes"].values()) for r in rounds)
    outcomes: dict[str, int] = {}
    for r in rounds:
        for key, count in r["outcomes"].items():
            outcomes[key] = outcomes.get(key, 0) + count
    seconds = [s for r in rounds for s in r["seconds"]]
    return {
        "outcomes": outcomes,
        "turn": benchlib.summary_ms(seconds),
        "cpu_ms_per_turn": {"service": 1000 * service_cpu / turns, "upstream": 1000 * upstream_cpu / turns},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=400, help="Turns measured in each phase.")
    parser.add_argument("--concurrency", type=int, default=8, help="Turns in flight at once.")
    parser.add_argument("--tokens", type=int, default=4, help="Tokens per upstream answer.")
    parser.add_argument("--database-url", default="", help="Service database (default: SQLite in the temp data dir).")
    parser.add_argument(
        "--redis-url", default="", help="redis.url for the service, as production runs it (default: no Redis)."
    )
    parser.add_argument(
        "--quantized-queries", choices=("on", "off"), default="on", help="embedding.quantized_queries for the service."
    )
    parser.add_argument("--phases", default="repeating,novel", help="Which phases, comma-separated.")
    parser.add_argument("--against", help="Another set-up checkout whose service runs beside this one.")
    parser.add_argument("--rounds", type=int, default=6, help="With --against: alternating rounds per phase.")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--arg", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "upstream":
        serve_upstream(Path(args.arg[0]), args.tokens, 0.0, 0.0, novel=args.arg[1] == "novel")
        return
    if args.role == "service":
        serve_service(
            int(args.arg[0]),
            Path(args.arg[1]),
            args.arg[2],
            args.database_url,
            0.015,
            redis_url=args.redis_url,
            quantized_queries=args.quantized_queries == "on",
        )
        return

    common = ["--tokens", str(args.tokens), "--database-url", args.database_url]
    common += ["--quantized-queries", args.quantized_queries]
    if args.redis_url:  # only then: an --against checkout from before the option runs without it
        common += ["--redis-url", args.redis_url]
    checkouts: dict[str, Path | None] = {"this": None}
    if args.against:
        checkouts["against"] = Path(args.against).resolve()
    phases: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-turn-") as tmp:
        data_dir = Path(tmp) / "data"
        print("ingesting the demo corpus…", file=sys.stderr)
        ingest_demo(data_dir, args.database_url)
        for name in checkouts:
            if name != "this":  # the embedded index takes one process: each service gets its own copy
                shutil.copytree(data_dir, Path(tmp) / f"data-{name}")
        first = 0
        for phase in args.phases.split(","):
            procs: list[subprocess.Popen[bytes]] = []
            try:
                # A fresh upstream and services for each phase: the novel phase starts with no cache the repeating
                # one filled, as a service meeting new traffic would.
                port_file = Path(tmp) / f"upstream-{phase}.port"
                upstream_argv = ["--role", "upstream", "--arg", str(port_file), "--arg", phase, *common]
                upstream, upstream_port = start_upstream(benchlib.module_argv(_SELF, *upstream_argv), port_file)
                procs.append(upstream)
                upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
                services: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
                for name, checkout in checkouts.items():
                    port = free_port()
                    data = data_dir if checkout is None else Path(tmp) / f"data-{name}"
                    role = ["--role", "service", "--arg", str(port), "--arg", str(data), "--arg", upstream_url]
                    service = start_service([*_service_bench(checkout), *role, *common], port, checkout=checkout)
                    procs.append(service)
                    services[name] = (service, port)
                novel = phase == "novel"
                print(f"{phase}: warming up, then {args.turns} turns, {args.concurrency} at once…", file=sys.stderr)
                for _, port in services.values():
                    asyncio.run(_turns(port, first, 2 * args.concurrency, args.concurrency, novel=novel))
                    first += 2 * args.concurrency
                rounds = args.rounds if len(services) > 1 else 1
                cpu = dict.fromkeys(services, 0.0)
                results: dict[str, list[dict[str, Any]]] = {name: [] for name in services}
                n = args.turns // rounds
                with ProcWatch(upstream.pid) as upstream_watch:
                    for r in range(rounds):
                        # Alternate who goes first, so neither always meets the machine right after the other.
                        for name in list(services)[:: 1 if r % 2 == 0 else -1]:
                            service, port = services[name]
                            with ProcWatch(service.pid) as watch:
                                results[name].append(asyncio.run(_turns(port, first, n, args.concurrency, novel=novel)))
                            cpu[name] += watch.cpu
                            first += n
                phases[phase] = {
                    name: _merged(results[name], cpu[name], upstream_watch.cpu / len(services)) for name in services
                }
            finally:
                stop(procs)

    rows = []
    for phase, per_service in phases.items():
        for name, result in per_service.items():
            service_ms = result["cpu_ms_per_turn"]["service"]
            against = per_service.get("against")
            ratio = f"{service_ms / against['cpu_ms_per_turn']['service']:.3f}" if against and name == "this" else ""
            rows.append(
                [
                    phase,
                    name if len(per_service) > 1 else "",
                    ", ".join(f"{k} {v}" for k, v in sorted(result["outcomes"].items())),
                    round(service_ms, 2),
                    ratio,
                    round(result["cpu_ms_per_turn"]["upstream"], 2),
                    f"{result['turn']['p50_ms']:.1f} / {result['turn']['p99_ms']:.1f}",
                    round(1000 * service_ms / _ANSWER_TOKENS, 2),
                ]
            )
    benchlib.print_table(
        f"One turn's cost to the service ({args.turns} turns, {args.concurrency} at once, {args.tokens}-token answers)",
        ["questions", "service", "outcomes", "service CPU ms / turn", "this / against", "upstream CPU ms / turn",
         "turn p50 / p99 ms", f"µs / token over {_ANSWER_TOKENS:,}-token answers"],
        rows,
    )  # fmt: skip
    benchlib.write_results("turn_cost", {"machine": benchlib.machine(), "args": vars(args), "phases": phases})


if __name__ == "__main__":
    main()
