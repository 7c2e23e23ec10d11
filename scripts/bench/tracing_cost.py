"""What OpenTelemetry tracing costs per token: two services side by side in one run, tracing off and on.

Both serve the same demo corpus (each its own copy of the index) in front of one scripted upstream; the concurrent
streams are dealt to them in turn (even to the untraced one, odd to the traced one), so both carry the same load at
the same moments on the same cores, and the machine's noise falls on both alike. The traced one exports every span
over OTLP/HTTP to a collector that accepts and drops them (a thread of this client), as it would to a real one.
Reported per service: CPU per token over the whole phase (each turn's own work, its spans included, spread over its
tokens) and in the steady state, while every stream receives and none starts or ends (the relay alone).

    .venv/bin/python -m scripts.bench.tracing_cost                 # 200 streams, 100 through each service
    .venv/bin/python -m scripts.bench.tracing_cost --streams 1000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from scripts.bench import benchlib
from scripts.bench.streamlib import (
    SOURCES_MARK,
    TOKEN_MARK,
    WORD_MARK,
    chat_body,
    concurrent,
    free_port,
    ingest_demo,
    start_service,
    start_upstream,
    stop,
)

_CHAT = "scripts.bench.chat"  # its --role upstream / service run the scripted upstream and the service


class Collector:
    """An OTLP/HTTP endpoint that reads every export whole and answers 200 (in a thread of its own)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests = 0
        self.bytes = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                self.requests += 1
                self.bytes += length
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=200, help="Concurrent streams, dealt to the two services.")
    parser.add_argument("--interval", type=float, default=0.05, help="Upstream seconds between tokens.")
    parser.add_argument(
        "--ramp", type=float, default=None, help="Seconds over which streams open (default streams/10)."
    )
    parser.add_argument("--token-path", choices=("native", "python"), default="native", help="Both services' relay.")
    args = parser.parse_args()
    ramp = args.ramp if args.ramp is not None else args.streams / 10
    tokens = int((ramp + 10) / args.interval)  # every stream still receiving 10 s after the last one opened
    common = ["--tokens", str(tokens), "--interval", str(args.interval), "--token-path", args.token_path]
    collector = Collector()
    procs = []
    with tempfile.TemporaryDirectory(prefix="bench-tracing-") as tmp:
        try:
            print("ingesting the demo corpus…", file=sys.stderr)
            untraced_dir, traced_dir = Path(tmp) / "off", Path(tmp) / "on"
            ingest_demo(untraced_dir, "")
            shutil.copytree(untraced_dir, traced_dir)
            port_file = Path(tmp) / "upstream.port"
            upstream, upstream_port = start_upstream(
                benchlib.module_argv(_CHAT, "--role", "upstream", "--arg", str(port_file), *common), port_file
            )
            procs.append(upstream)
            url = f"http://127.0.0.1:{upstream_port}/v1"
            services: dict[str, tuple[int, int]] = {}
            for name, data_dir in (("off", untraced_dir), ("on", traced_dir)):
                port = free_port()
                argv = benchlib.module_argv(_CHAT, "--role", "service", "--arg", str(port), "--arg", str(data_dir))
                traced = {
                    "LORECHAT_TRACING__ENABLED": "true",
                    "LORECHAT_TRACING__ENDPOINT": f"http://127.0.0.1:{collector.port}",
                }
                saved = dict(os.environ)
                os.environ.update(traced if name == "on" else {"LORECHAT_TRACING__ENABLED": "false"})
                os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
                try:
                    service = start_service([*argv, "--arg", url, *common], port)
                finally:
                    os.environ.clear()
                    os.environ.update(saved)
                procs.append(service)
                services[name] = (port, service.pid)
            questions = benchlib.eval_queries()
            creators = ["hazel-marsh", "ines-calloway", "tomas-reyes"]
            print(f"{args.streams} concurrent streams, dealt to both services…", file=sys.stderr)
            phase = asyncio.run(
                concurrent(
                    [services["off"][0], services["on"][0]],
                    "/api/v1/chat",
                    args.streams,
                    ramp,
                    lambda i: chat_body(i, questions, creators),
                    {"src": SOURCES_MARK, "tok": TOKEN_MARK, "word": WORD_MARK},
                    {"tracing off": services["off"][1], "tracing on": services["on"][1], "upstream": upstream.pid},
                )
            )
        finally:
            stop(procs)
    _report(phase, collector, args)


def _report(phase: dict[str, Any], collector: Collector, args: argparse.Namespace) -> None:
    # Streams alternate between the two services and carry as many tokens each: half of the tokens went to each.
    half = phase["tokens"] / 2
    steady = phase["steady_state"]
    rows, figures = [], {}
    for name in ("tracing off", "tracing on"):
        whole = phase["processes"][name]["cpu_seconds"] / half * 1e6 if half else float("nan")
        relay = steady["processes"][name]["cpu_seconds"] / (steady["tokens"] / 2) * 1e6 if steady else float("nan")
        figures[name] = (whole, relay)
        rows.append([name, phase["processes"][name]["cpu_seconds"], round(whole, 1), round(relay, 1)])
    benchlib.print_table(
        f"{args.streams} streams, half through each service ({args.token_path} relay; failed {phase['failed']})",
        ["service", "CPU s", "µs CPU / token, whole phase", "µs CPU / token, steady state"],
        rows,
    )
    whole_ratio = figures["tracing on"][0] / figures["tracing off"][0]
    relay_ratio = figures["tracing on"][1] / figures["tracing off"][1]
    print(
        f"tracing on / off: whole phase {whole_ratio:.3f}, steady state (the token path) {relay_ratio:.3f}; "
        f"collector got {collector.requests} exports, {collector.bytes / 1024:.0f} KiB"
    )
    benchlib.write_results(
        "tracing_cost",
        {
            "settings": vars(args),
            "phase": phase,
            "us_per_token": {name: {"whole": round(w, 2), "steady": round(s, 2)} for name, (w, s) in figures.items()},
            "on_over_off": {"whole": round(whole_ratio, 4), "steady": round(relay_ratio, 4)},
            "exports": {"requests": collector.requests, "bytes": collector.bytes},
        },
    )


if __name__ == "__main__":
    main()
