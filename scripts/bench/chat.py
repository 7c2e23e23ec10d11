"""Chat latency and streaming overhead: the real service in front of a scripted OpenAI-compatible upstream.

Three processes, so each one's CPU and memory are its own: the scripted upstream (tests/fakes/openai_server.py),
the service (create_app(settings) under uvicorn, one worker, the demo corpus ingested into a temp data dir,
openai tier → the upstream, rate limits off, per-IP stream cap raised), and this client (raw asyncio sockets,
lighter than an HTTP library at 1,000 streams).

  1. upstream alone, sequential: time to first content token (TTFT), measured straight against the fake;
  2. service, sequential: time to `sources` and to the first `token`; the time we add = our TTFT minus the
     upstream's median TTFT (and the same after `sources`, i.e. without retrieval);
  3. N concurrent streams (upstream sends a token every --interval s): inter-token gaps through the service
     beside N streams straight to the upstream, in the same run; service CPU and peak RSS from /proc. CPU per
     token over the whole phase (each turn's own work spread over its tokens, the issue's measure), and in the
     steady state, while every stream receives and none starts or ends (the relay alone).

    .venv/bin/python -m scripts.bench.chat                  # 200 streams
    .venv/bin/python -m scripts.bench.chat --streams 1000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from scripts.bench import benchlib
from scripts.bench.proc_cpu import print_steady_state
from scripts.bench.streamlib import (
    SOURCES_MARK,
    TOKEN_MARK,
    UPSTREAM_TOKEN_MARK,
    WORD_MARK,
    chat_body,
    concurrent,
    free_port,
    ingest_demo,
    serve_service,
    serve_upstream,
    start_service,
    start_upstream,
    stop,
    stream_once,
    upstream_body,
)

_SELF = "scripts.bench.chat"  # this bench, run again as the upstream's and the service's processes


async def sequential(port: int, upstream_port: int, n: int) -> dict[str, Any]:
    questions = benchlib.eval_queries()
    creators = ["hazel-marsh", "ines-calloway", "tomas-reyes"]
    up_ttft, tts, ttft, after_sources = [], [], [], []
    errors = 0
    for i in range(n + 5):
        up = await stream_once(
            upstream_port, "/v1/chat/completions", upstream_body(), {"tok": UPSTREAM_TOKEN_MARK}, stop_on="tok"
        )
        ours = await stream_once(
            port,
            "/api/v1/chat",
            chat_body(i, questions, creators),
            {"src": SOURCES_MARK, "tok": TOKEN_MARK},
            stop_on="tok",
        )
        if ours["status"] != "200" or not ours["times"]["tok"] or not ours["times"]["src"]:
            errors += 1
            continue
        if i < 5:
            continue  # warm-up
        up_ttft.append(up["times"]["tok"][0])
        tts.append(ours["times"]["src"][0])
        ttft.append(ours["times"]["tok"][0])
        after_sources.append(ours["times"]["tok"][0] - ours["times"]["src"][0])
    upstream_p50 = benchlib.percentile(up_ttft, 50)
    return {
        "errors": errors,
        "upstream_ttft": benchlib.summary_ms(up_ttft),
        "time_to_sources": benchlib.summary_ms(tts),
        "service_ttft": benchlib.summary_ms(ttft),
        "added_ttft": benchlib.summary_ms([t - upstream_p50 for t in ttft]),
        "added_ttft_after_sources": benchlib.summary_ms([t - upstream_p50 for t in after_sources]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=200, help="Concurrent streams in phase 3.")
    parser.add_argument("--requests", type=int, default=50, help="Sequential requests in phases 1 and 2.")
    parser.add_argument("--first-token-delay", type=float, default=0.1, help="Upstream seconds before its first token.")
    parser.add_argument("--interval", type=float, default=0.05, help="Upstream seconds between tokens.")
    parser.add_argument(
        "--ramp",
        type=float,
        default=None,
        help="Seconds over which the concurrent streams open (default streams/10: 10 new turns a second, within "
        "what query embedding on 2 cores keeps up with; faster arrivals queue past index.timeout_seconds → 503).",
    )
    parser.add_argument(
        "--tokens",
        type=int,
        default=None,
        help="Tokens per upstream answer (default: enough to stream 10 s past the ramp, so all streams overlap).",
    )
    parser.add_argument("--database-url", default="", help="Service database (default: SQLite in the temp data dir).")
    parser.add_argument(
        "--redis-url",
        default="",
        help="redis.url for the service, as production runs it: resumable streams keep every frame there (a 60 s "
        "lifetime here; default: no Redis, the embedded defaults). A local server's CPU is reported beside ours.",
    )
    parser.add_argument(
        "--resume-seconds",
        type=int,
        default=60,
        help="server.resume_seconds with --redis-url (0: Redis for the rest, no resumable streams: the log's cost).",
    )
    parser.add_argument(
        "--coalesce",
        type=float,
        default=0.015,
        help="server.token_coalesce_seconds for the service (0: one write per upstream read).",
    )
    parser.add_argument(
        "--malloc-arenas",
        type=int,
        default=None,
        help="server.malloc_arenas for the service (default: the setting's; 0: glibc's own default).",
    )
    parser.add_argument(
        "--freeze-startup-heap",
        choices=("on", "off"),
        default="on",
        help="server.freeze_startup_heap for the service (on, as `lorechat serve`; off: the collector walks it all).",
    )
    parser.add_argument(
        "--token-path",
        choices=("native", "python"),
        default="native",
        help="server.native_token_path for the service (native: the relay in C; python: relay.py's push path).",
    )
    parser.add_argument(
        "--embedding-threads",
        type=int,
        default=0,
        help="embedding.threads for the service (0: the service's automatic choice, one core a query).",
    )
    parser.add_argument(
        "--quantized-queries",
        choices=("on", "off"),
        default="on",
        help="embedding.quantized_queries for the service (on: questions through the int8 twin; off: fp32).",
    )
    parser.add_argument(
        "--novel",
        action="store_true",
        help="Every turn asks a question no earlier turn asked and gets an answer of new sentences (the answer "
        "checks embed them as for real traffic; by default the demo set's questions and one answer repeat).",
    )
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--arg", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ramp is None:
        args.ramp = args.streams / 10
    if args.tokens is None:
        args.tokens = int((args.ramp + 10) / args.interval)
    if args.role == "upstream":
        serve_upstream(Path(args.arg[0]), args.tokens, args.first_token_delay, args.interval, novel=args.novel)
        return
    if args.role == "service":
        serve_service(
            int(args.arg[0]),
            Path(args.arg[1]),
            args.arg[2],
            args.database_url,
            args.coalesce,
            redis_url=args.redis_url,
            resume_seconds=args.resume_seconds,
            malloc_arenas=args.malloc_arenas,
            freeze_startup_heap=args.freeze_startup_heap == "on",
            native_token_path=args.token_path == "native",
            embedding_threads=args.embedding_threads,
            quantized_queries=args.quantized_queries == "on",
        )
        return

    common = [
        "--tokens",
        str(args.tokens),
        "--first-token-delay",
        str(args.first_token_delay),
        "--interval",
        str(args.interval),
        "--database-url",
        args.database_url,
        "--redis-url",
        args.redis_url,
        "--resume-seconds",
        str(args.resume_seconds),
        "--coalesce",
        str(args.coalesce),
        *(["--malloc-arenas", str(args.malloc_arenas)] if args.malloc_arenas is not None else []),
        "--freeze-startup-heap",
        args.freeze_startup_heap,
        "--token-path",
        args.token_path,
        "--embedding-threads",
        str(args.embedding_threads),
        "--quantized-queries",
        args.quantized_queries,
        *(["--novel"] if args.novel else []),
    ]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bench-chat-") as tmp:
        try:
            data_dir = Path(tmp) / "data"
            print("ingesting the demo corpus…", file=sys.stderr)
            ingest_demo(data_dir, args.database_url)
            port_file = Path(tmp) / "upstream.port"
            upstream, upstream_port = start_upstream(
                benchlib.module_argv(_SELF, "--role", "upstream", "--arg", str(port_file), *common), port_file
            )
            procs.append(upstream)
            port = free_port()
            upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
            service_argv = benchlib.module_argv(_SELF, "--role", "service", "--arg", str(port), "--arg", str(data_dir))
            service = start_service([*service_argv, "--arg", upstream_url, *common], port)
            procs.append(service)
            print("measuring sequential latency…", file=sys.stderr)
            seq = asyncio.run(sequential(port, upstream_port, args.requests))
            print(f"{args.streams} concurrent streams, upstream alone…", file=sys.stderr)
            questions = benchlib.eval_queries()
            creators = ["hazel-marsh", "ines-calloway", "tomas-reyes"]
            direct = asyncio.run(
                concurrent(
                    upstream_port,
                    "/v1/chat/completions",
                    args.streams,
                    args.ramp,
                    lambda i: upstream_body(),
                    {"tok": UPSTREAM_TOKEN_MARK, "word": WORD_MARK},
                    {"upstream": procs[0].pid, "client": os.getpid()},
                )
            )
            print(f"{args.streams} concurrent streams through the service…", file=sys.stderr)
            through = asyncio.run(
                concurrent(
                    port,
                    "/api/v1/chat",
                    args.streams,
                    args.ramp,
                    lambda i: chat_body(i, questions, creators, novel=args.novel),
                    {"src": SOURCES_MARK, "tok": TOKEN_MARK, "word": WORD_MARK},
                    {
                        "service": service.pid,
                        "upstream": procs[0].pid,
                        "client": os.getpid(),
                        **({"redis": pid} if (pid := local_redis_pid(args.redis_url)) else {}),
                    },
                )
            )
        finally:
            stop(procs)
    _report(seq, direct, through, args)


def local_redis_pid(url: str) -> int | None:
    """The process id of the Redis server at `url` when it runs on this machine (its CPU is the service's too)."""
    if not url:
        return None
    import redis

    client = redis.Redis.from_url(url)
    try:
        pid = int(client.info("server")["process_id"])
    finally:
        client.close()
    return pid if Path(f"/proc/{pid}").exists() else None


def _report(seq: dict[str, Any], direct: dict[str, Any], through: dict[str, Any], args: argparse.Namespace) -> None:
    rows = [
        ["upstream TTFT (direct)", seq["upstream_ttft"]["p50_ms"], seq["upstream_ttft"]["p99_ms"]],
        ["service time to sources", seq["time_to_sources"]["p50_ms"], seq["time_to_sources"]["p99_ms"]],
        ["service TTFT", seq["service_ttft"]["p50_ms"], seq["service_ttft"]["p99_ms"]],
        ["added TTFT (service − upstream p50)", seq["added_ttft"]["p50_ms"], seq["added_ttft"]["p99_ms"]],
        [
            "added TTFT after sources",
            seq["added_ttft_after_sources"]["p50_ms"],
            seq["added_ttft_after_sources"]["p99_ms"],
        ],
    ]
    benchlib.print_table(
        f"Sequential ({args.requests} requests, upstream first token after {args.first_token_delay * 1000:.0f} ms; "
        f"errors {seq['errors']})",
        ["measure", "p50 ms", "p99 ms"],
        rows,
    )
    added_p99 = through["gap"]["p99_ms"] - direct["gap"]["p99_ms"]
    benchlib.print_table(
        f"{args.streams} concurrent streams, one worker (upstream token every {args.interval * 1000:.0f} ms, "
        f"new streams at {args.streams / args.ramp:.0f}/s)",
        ["path", "failed", "peak open", "tokens", "gap p50 ms", "gap p99 ms", "gap max ms", "sources p50 / p99 ms"],
        [
            [
                name,
                phase["failed"],
                phase["peak_streams_receiving_tokens"],
                phase["tokens"],
                phase["gap"]["p50_ms"],
                phase["gap"]["p99_ms"],
                phase["gap"]["max_ms"],
                f"{phase['time_to_sources']['p50_ms']} / {phase['time_to_sources']['p99_ms']}"
                if phase["time_to_sources"]
                else "",
            ]
            for name, phase in (("upstream direct", direct), ("through service", through))
        ],
    )
    rows = []
    for phase_name, phase in (("upstream direct", direct), ("through service", through)):
        for name, proc in phase["processes"].items():
            rows.append(
                [
                    phase_name,
                    name,
                    proc["cpu_seconds"],
                    proc["cpu_cores_busy"],
                    proc["us_per_token"],
                    f"{proc['rss_mib_before']:.0f} → {proc['peak_rss_mib']:.0f}",
                ]
            )
    benchlib.print_table(
        "CPU per process (client, upstream and service share the machine's cores)",
        ["phase", "process", "CPU s", "cores busy", "µs CPU / token", "RSS MiB before → peak"],
        rows,
    )
    steady = print_steady_state({"upstream direct": direct, "through service": through}, "service")
    service = through["processes"]["service"]
    upstream = through["processes"]["upstream"]
    per_stream_kib = (service["peak_rss_mib"] - service["rss_mib_before"]) * 1024 / max(args.streams, 1)
    ratio = service["us_per_token"] / upstream["us_per_token"] if upstream["us_per_token"] else float("nan")
    print(
        f"service {service['us_per_token']} µs/token vs upstream {upstream['us_per_token']} µs/token "
        f"(ratio {ratio:.2f}); memory per stream ≈ {per_stream_kib:.0f} KiB; added p99 gap {added_p99:.1f} ms"
    )
    redis_server = through["processes"].get("redis")
    if redis_server and upstream["us_per_token"]:
        both = (service["us_per_token"] or 0) + (redis_server["us_per_token"] or 0)
        print(f"service + its Redis {both:.1f} µs/token (ratio {both / upstream['us_per_token']:.2f})")
    if steady is not None:
        relay, upstream_relay, relay_ratio = steady
        print(
            f"steady state, the relay alone: service {relay} µs/token vs upstream {upstream_relay} "
            f"(ratio {relay_ratio:.2f})"
        )
    goals = {
        "added_ttft_p50_le_5ms": seq["added_ttft_after_sources"]["p50_ms"] <= 5,
        "added_gap_p99_le_50ms": added_p99 <= 50,
        "no_failures": through["failed"] == 0,
        "service_us_per_token_le_25": (service["us_per_token"] or 1e9) <= 25,
        "service_le_upstream_per_token": ratio <= 1,
        "per_stream_memory_le_100kib": per_stream_kib <= 100,
    }
    print(f"outcomes: upstream direct {direct['outcomes']}; through service {through['outcomes']}")
    print(f"goals: {goals}")
    benchlib.write_results(
        "chat",
        {
            "settings": {k: v for k, v in vars(args).items() if k not in ("role", "arg")},
            "sequential": seq,
            "concurrent_direct": direct,
            "concurrent_service": through,
            "added_gap_p99_ms": round(added_p99, 3),
            "per_stream_kib": round(per_stream_kib, 1),
            "service_over_upstream_per_token": round(ratio, 3),
            "steady_state_service_over_upstream_per_token": round(steady[2], 3) if steady else None,
            "goals": goals,
        },
    )


if __name__ == "__main__":
    main()
