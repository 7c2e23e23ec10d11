"""Scale-out on one machine: 1 vs 3 API replicas sharing PostgreSQL and Redis, and what resumable streams cost.

Every replica is its own process (create_app under uvicorn, as `lorechat serve`), on its own copy of the same
ingested Edge index, one PostgreSQL database and one Redis; the client spreads requests over the replicas in
turn (as a load balancer would). Two scripted upstreams, each its own process: short answers (turns/s) and long
ones (concurrent streams).

  1. turns/s: `--clients` visitors in a closed loop for `--seconds`, each asking, reading the whole short answer
     to `done`, and asking again; turns completed per second, time to `done` p50/p99, failures;
  2. streams: `--streams` long answers opened over `--ramp` seconds: failures, inter-token gap p99, time to
     `sources`, and every process's CPU (replicas, upstream, Redis, this client);
  3. resume overhead: phase 2 on one replica again with `server.resume_seconds: 0` (no event log), in the same
     run: the difference in service + Redis CPU per relayed token is what keeping every event costs.

Run with a database and a Redis of its own (both are written to):
    createdb lorechat_bench
    .venv/bin/python -m scripts.bench.replicas --pg postgresql+asyncpg://postgres@127.0.0.1:5432/lorechat_bench \\
        --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scripts.bench import benchlib
from scripts.bench.streamlib import (
    END_MARKS,
    SOURCES_MARK,
    TOKEN_MARK,
    WORD_MARK,
    chat_body,
    concurrent,
    free_port,
    ingest_demo,
    outcome,
    serve_service,
    serve_upstream,
    stream_once,
    wait_port,
)

_SELF = "scripts.bench.replicas"  # this bench, run again as the upstreams' and the replicas' processes
CREATORS = ["hazel-marsh", "ines-calloway", "tomas-reyes"]


@contextlib.contextmanager
def upstream(tmp: Path, name: str, tokens: int, first_delay: float, interval: float) -> Iterator[str]:
    port_file = tmp / f"{name}.port"
    args = ["--role", "upstream", "--arg", str(port_file), "--arg", str(tokens), "--arg", str(first_delay)]
    proc = subprocess.Popen(benchlib.module_argv(_SELF, *args, "--arg", str(interval)), cwd=benchlib.REPO)
    try:
        while not port_file.exists() or not port_file.read_text():
            if proc.poll() is not None:
                raise RuntimeError("the scripted upstream did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port_file.read_text()}/v1#{proc.pid}"
    finally:
        _stop([proc])


@contextlib.contextmanager
def replicas(
    count: int, template: Path, tmp: Path, upstream_url: str, args: argparse.Namespace, *, resume_seconds: int
) -> Iterator[list[tuple[int, int]]]:
    """`count` services, each on its own copy of the index; yields (port, pid) for each once all listen."""
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        for i in range(count):
            data_dir = Path(tempfile.mkdtemp(prefix=f"replica-{i}-", dir=tmp)) / "data"
            shutil.copytree(template, data_dir)
            port = free_port()
            role = ["--role", "service", "--arg", str(port), "--arg", str(data_dir), "--arg", upstream_url]
            procs.append(
                subprocess.Popen(
                    benchlib.module_argv(_SELF, *role, "--arg", str(resume_seconds), *_shared(args)),
                    env={**os.environ, "LORECHAT_CONFIG": os.devnull},
                    cwd=benchlib.REPO,
                )
            )
            ports.append(port)
        for port, proc in zip(ports, procs, strict=True):
            wait_port(port, proc)
        yield [(port, proc.pid) for port, proc in zip(ports, procs, strict=True)]
    finally:
        _stop(procs)


def _shared(args: argparse.Namespace) -> list[str]:
    return ["--pg", args.pg, "--redis", args.redis]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


async def closed_loop(ports: list[int], clients: int, seconds: float) -> dict[str, Any]:
    """`clients` visitors asking one after another for `seconds`: completed turns per second and time to done."""
    questions = benchlib.eval_queries()
    deadline = time.perf_counter() + seconds
    to_done: list[float] = []
    outcomes: Counter[str] = Counter()

    async def visitor(v: int) -> None:
        i = v
        while time.perf_counter() < deadline:
            port = ports[i % len(ports)]
            try:
                result: dict[str, Any] | BaseException = await stream_once(
                    port, "/api/v1/chat", chat_body(i, questions, CREATORS), {"tok": TOKEN_MARK, "end": END_MARKS[0]}
                )
            except OSError as exc:
                result = exc
            verdict = outcome(result, "tok")
            if verdict == "ok" and isinstance(result, dict) and not result["times"]["end"]:
                verdict = "no done"
            outcomes[verdict] += 1
            if verdict == "ok" and isinstance(result, dict):
                to_done.append(result["times"]["end"][0])
            i += clients

    started = time.perf_counter()
    await asyncio.gather(*(visitor(v) for v in range(clients)))
    wall = time.perf_counter() - started
    return {
        "turns": outcomes["ok"],
        "turns_per_second": round(outcomes["ok"] / wall, 2),
        "failed": sum(count for verdict, count in outcomes.items() if verdict != "ok"),
        "outcomes": dict(outcomes),
        "time_to_done": benchlib.summary_ms(to_done) if to_done else None,
    }


def redis_pid(url: str) -> int | None:
    import redis

    with contextlib.suppress(Exception):
        return int(redis.Redis.from_url(url, socket_timeout=2).info("server")["process_id"])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", required=False, default="", help="PostgreSQL URL (SQLAlchemy asyncpg form).")
    parser.add_argument("--redis", required=False, default="", help="Redis URL.")
    parser.add_argument("--replicas", type=int, default=3, help="Replicas to compare with one.")
    parser.add_argument("--clients", type=int, default=24, help="Closed-loop visitors in the turns/s phase.")
    parser.add_argument("--seconds", type=float, default=20, help="Length of the turns/s phase.")
    parser.add_argument("--streams", type=int, default=300, help="Concurrent long streams in the streams phase.")
    parser.add_argument("--interval", type=float, default=0.05, help="Upstream seconds between tokens (long answers).")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--arg", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "upstream":
        port_file, tokens, first_delay, interval = args.arg
        serve_upstream(Path(port_file), int(tokens), float(first_delay), float(interval))
        return
    if args.role == "service":
        port, data_dir, upstream_url, resume_seconds = args.arg
        serve_service(
            int(port),
            Path(data_dir),
            upstream_url.split("#", 1)[0],
            args.pg,
            0.015,
            redis_url=args.redis,
            resume_seconds=int(resume_seconds),
        )
        return
    if not args.pg or not args.redis:
        parser.error("--pg and --redis are required: replicas share a PostgreSQL database and a Redis")

    ramp = args.streams / 10  # ten new turns a second
    long_tokens = int((ramp + 10) / args.interval)
    results: dict[str, Any] = {"settings": {k: v for k, v in vars(args).items() if k not in ("role", "arg")}}
    rpid = redis_pid(args.redis)
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp_name:
        tmp = Path(tmp_name)
        template = tmp / "template"
        print("ingesting the demo corpus…", file=sys.stderr)
        ingest_demo(template, args.pg)
        with (
            upstream(tmp, "short", 8, 0.05, 0.01) as short_url,
            upstream(tmp, "long", long_tokens, 0.1, args.interval) as long_url,
        ):
            long_pid = int(long_url.rsplit("#", 1)[1])
            for count in (1, args.replicas):
                print(f"{count} replica(s): turns/s with {args.clients} visitors…", file=sys.stderr)
                with replicas(count, template, tmp, short_url, args, resume_seconds=600) as served:
                    ports = [port for port, _ in served]
                    asyncio.run(closed_loop(ports, args.clients, 3))  # warm-up: models, caches, connections
                    results[f"turns_{count}"] = asyncio.run(closed_loop(ports, args.clients, args.seconds))
                print(f"{count} replica(s): {args.streams} concurrent streams…", file=sys.stderr)
                results[f"streams_{count}"] = _streams(count, template, tmp, long_url, long_pid, rpid, args, ramp, 600)
            print(f"1 replica without the event log: {args.streams} concurrent streams…", file=sys.stderr)
            results["streams_1_no_log"] = _streams(1, template, tmp, long_url, long_pid, rpid, args, ramp, 0)
    _report(results, args)


def _streams(
    count: int,
    template: Path,
    tmp: Path,
    upstream_url: str,
    upstream_pid: int,
    rpid: int | None,
    args: argparse.Namespace,
    ramp: float,
    resume_seconds: int,
) -> dict[str, Any]:
    questions = benchlib.eval_queries()
    with replicas(count, template, tmp, upstream_url, args, resume_seconds=resume_seconds) as served:
        pids = {f"replica {i + 1}": pid for i, (_, pid) in enumerate(served)}
        pids["upstream"] = upstream_pid
        if rpid is not None:
            pids["redis"] = rpid
        pids["client"] = os.getpid()
        return asyncio.run(
            concurrent(
                [port for port, _ in served],
                "/api/v1/chat",
                args.streams,
                ramp,
                lambda i: chat_body(i, questions, CREATORS),
                {"src": SOURCES_MARK, "tok": TOKEN_MARK, "word": WORD_MARK},
                pids,
            )
        )


def _service_cpu(phase: dict[str, Any]) -> float:
    return sum(proc["cpu_seconds"] for name, proc in phase["processes"].items() if name.startswith("replica"))


def _report(results: dict[str, Any], args: argparse.Namespace) -> None:
    n = args.replicas
    one, many = results["turns_1"], results[f"turns_{n}"]
    benchlib.print_table(
        f"Turns per second ({args.clients} visitors in a closed loop, {args.seconds:.0f} s, 8-token answers)",
        ["replicas", "turns/s", "failed", "time to done p50 / p99 ms", "outcomes"],
        [
            [count, phase["turns_per_second"], phase["failed"],
             f"{phase['time_to_done']['p50_ms']} / {phase['time_to_done']['p99_ms']}" if phase["time_to_done"] else "",
             phase["outcomes"]]
            for count, phase in ((1, one), (n, many))
        ],
    )  # fmt: skip
    rows = []
    for name, phase in (("1 replica", results["streams_1"]), (f"{n} replicas", results[f"streams_{n}"]),
                        ("1 replica, no event log", results["streams_1_no_log"])):  # fmt: skip
        tokens = phase["tokens"] or 1
        redis_cpu = phase["processes"].get("redis", {}).get("cpu_seconds", 0.0)
        sources = phase["time_to_sources"]
        rows.append(
            [name, phase["failed"], phase["peak_streams_receiving_tokens"], phase["gap"]["p99_ms"],
             f"{sources['p50_ms']} / {sources['p99_ms']}" if sources else "",
             round(_service_cpu(phase) / tokens * 1e6, 1), round(redis_cpu / tokens * 1e6, 1)]
        )  # fmt: skip
    benchlib.print_table(
        f"{args.streams} concurrent streams (a token every {args.interval * 1000:.0f} ms, 10 new streams/s)",
        ["replicas", "failed", "peak open", "gap p99 ms", "sources p50 / p99 ms", "service µs/token", "redis µs/token"],
        rows,
    )
    on, off = results["streams_1"], results["streams_1_no_log"]

    def per_event(phase: dict[str, Any]) -> float:
        redis_cpu = phase["processes"].get("redis", {}).get("cpu_seconds", 0.0)
        return (_service_cpu(phase) + redis_cpu) / max(phase["tokens"], 1) * 1e6

    overhead = per_event(on) - per_event(off)
    ratio = many["turns_per_second"] / one["turns_per_second"] if one["turns_per_second"] else float("nan")
    print(
        f"turns/s {n} vs 1 replica: {ratio:.2f}×; resume log overhead ≈ {overhead:.1f} µs CPU per relayed token "
        f"(service + Redis, {per_event(on):.1f} with the log vs {per_event(off):.1f} without)"
    )
    results["turns_ratio"] = round(ratio, 3)
    results["resume_overhead_us_per_token"] = round(overhead, 1)
    benchlib.write_results("replicas", results)


if __name__ == "__main__":
    main()
