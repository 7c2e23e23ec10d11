"""Time to first token per tier on the default cascade (embedded defaults: extractive) or, with --local, on the
opt-in local tier (SmolLM2 unless --model-path, held until the claim check supports its answer) then extractive.

The real service (`lorechat serve` in its own process, the demo corpus ingested into a temp data dir, the
config's own tiers) answers the demo eval questions one after another. For every turn it records the time
to `sources`, to the first `token`, which tier answered (`done.cascade_tier`) and why tiers before it were
passed over (`done.skipped`). Prints TTFT p50/p99 per answering tier and over all turns, and the skip
reasons, so "the visitor gets a first token within the target" can be read off directly.

    .venv/bin/python -m scripts.bench.cascade                 # 25 questions
    .venv/bin/python -m scripts.bench.cascade --questions 50 --local --target 3
    .venv/bin/python -m scripts.bench.cascade --local --no-hold     # stream the local model's answers unchecked
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from scripts.bench import benchlib

LORECHAT = Path(sys.executable).with_name("lorechat")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_models_ready(base: str, server: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    """Poll /readyz until the index answers and no local model is still starting (ready or broken)."""
    deadline = time.monotonic() + timeout
    checks: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the service exited with {server.returncode} while starting")
        try:
            checks = httpx.get(f"{base}/readyz", timeout=5).json().get("checks", {})
        except httpx.HTTPError:
            checks = {}
        models = checks.get("models", {})
        if checks.get("index") == "ok" and all(state in ("ready", "broken") for state in models.values()):
            return checks
        time.sleep(0.5)
    raise SystemExit(f"the service was not ready within {timeout:.0f} s: {checks}")


def one_turn(client: httpx.Client, base: str, question: str) -> dict[str, Any]:
    started = time.perf_counter()
    turn: dict[str, Any] = {"question": question, "sources_s": None, "ttft_s": None, "tier": "", "skipped": []}
    event = ""
    with client.stream("POST", f"{base}/api/v1/chat", json={"query": question}) as response:
        if response.status_code != 200:
            turn["tier"] = f"HTTP {response.status_code}"
            return turn
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                now = time.perf_counter() - started
                if event == "sources" and turn["sources_s"] is None:
                    turn["sources_s"] = now
                elif event == "token" and turn["ttft_s"] is None:
                    turn["ttft_s"] = now
                elif event == "done":
                    done = json.loads(line[6:])
                    turn["tier"] = done["cascade_tier"]
                    turn["skipped"] = [f"{s['tier']}:{s['reason']}" for s in done.get("skipped", [])]
                elif event == "error":
                    turn["tier"] = "error " + json.loads(line[6:]).get("code", "")
    turn["total_s"] = time.perf_counter() - started
    return turn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=25, help="Turns to run (the demo eval questions, cycled).")
    parser.add_argument("--local", action="store_true", help="Put the local llama_cpp tier before extractive.")
    parser.add_argument("--model-path", default="", help="GGUF for --local (default: the bundled SmolLM2).")
    parser.add_argument("--no-hold", action="store_true", help="With --local: stream its answers unchecked.")
    parser.add_argument("--target", type=float, help="Override the local tier's first_token_target_seconds.")
    parser.add_argument("--ready-timeout", type=float, default=240, help="Seconds to wait for the local model.")
    args = parser.parse_args()

    questions = benchlib.eval_queries()
    with tempfile.TemporaryDirectory(prefix="lorechat-bench-cascade-") as tmp:
        env = {
            **os.environ,
            "LORECHAT_DATA_DIR": tmp,
            "LORECHAT_LOG_LEVEL": "WARNING",
            # One client on 127.0.0.1 asks many questions: hourly limits off for the bench.
            "LORECHAT_LIMITS__USER_PER_HOUR": "0",
            "LORECHAT_LIMITS__IP_PER_HOUR": "0",
            "LORECHAT_LIMITS__CREATOR_PER_HOUR": "0",
        }
        if args.local:  # a copy of config.yaml with the opt-in local tier first
            config = yaml.safe_load((benchlib.REPO / "config.yaml").read_text())
            local: dict[str, Any] = {"name": "local", "kind": "llama_cpp", "model_path": args.model_path,
                                     "hold_until_supported": not args.no_hold}  # fmt: skip
            if args.target is not None:
                local["first_token_target_seconds"] = args.target
            config["llm"]["tiers"] = [local, *config["llm"]["tiers"]]
            (Path(tmp) / "config.yaml").write_text(yaml.safe_dump(config))
            env["LORECHAT_CONFIG"] = str(Path(tmp) / "config.yaml")
        print("ingesting the demo corpus", file=sys.stderr)
        subprocess.run([str(LORECHAT), "ingest", str(benchlib.DEMO_CONTENT), "--json"], env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([str(LORECHAT), "serve", "--port", str(port)], env=env)
        try:
            started = time.monotonic()
            checks = wait_models_ready(base, server, args.ready_timeout)
            print(f"ready in {time.monotonic() - started:.1f} s: models {checks.get('models')}", file=sys.stderr)
            with httpx.Client(timeout=120) as client:
                turns = [one_turn(client, base, questions[i % len(questions)]) for i in range(args.questions)]
        finally:
            server.terminate()
            server.wait(30)
    report(turns, checks)


def report(turns: list[dict[str, Any]], checks: dict[str, Any]) -> None:
    by_tier: dict[str, list[float]] = collections.defaultdict(list)
    for turn in turns:
        if turn["ttft_s"] is not None:
            by_tier[turn["tier"]].append(turn["ttft_s"])
    all_ttft = [t["ttft_s"] for t in turns if t["ttft_s"] is not None]
    rows = []
    for tier, values in sorted(by_tier.items()):
        s = benchlib.summary_ms(values)
        rows.append([tier, len(values), s["p50_ms"], s["p99_ms"], s["max_ms"]])
    total = benchlib.summary_ms(all_ttft)
    rows.append(["all turns", len(all_ttft), total["p50_ms"], total["p99_ms"], total["max_ms"]])
    benchlib.print_table("Time to first token by answering tier (ms)", ["tier", "turns", "p50", "p99", "max"], rows)
    skips = collections.Counter(reason for turn in turns for reason in turn["skipped"])
    benchlib.print_table("Tiers passed over (tier:reason)", ["reason", "turns"], sorted(skips.items()))
    sources = benchlib.summary_ms([t["sources_s"] for t in turns if t["sources_s"] is not None])
    print(f"time to sources: p50 {sources['p50_ms']:.1f} ms, p99 {sources['p99_ms']:.1f} ms")
    benchlib.write_results("cascade", {"models": checks.get("models"), "turns": turns})


if __name__ == "__main__":
    main()
