"""What each process of a bench spends: CPU seconds and RSS sampled from /proc while a phase runs, and CPU per
token in the steady state of a run of concurrent streams (the chat, turn_cost and replicas benches)."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Sequence
from typing import Any

from scripts.bench import benchlib


class ProcWatch:
    """Samples a process's RSS and CPU seconds every 0.2 s while a phase runs (`cpu_at` reads the CPU spent by
    any moment of it); CPU seconds from /proc before and after."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss = 0.0
        self.samples: list[tuple[float, float]] = []  # (perf_counter, CPU seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, benchlib.rss_mib(self.pid))
            self.samples.append((time.perf_counter(), benchlib.cpu_seconds(self.pid)))
            self._stop.wait(0.2)

    def cpu_at(self, moment: float) -> float:
        """The process's CPU seconds at `moment` (perf_counter), interpolated between the samples around it."""
        after = bisect.bisect_left(self.samples, (moment,))
        if after == 0 or after == len(self.samples):
            raise ValueError("moment outside the sampled phase")
        (t0, c0), (t1, c1) = self.samples[after - 1], self.samples[after]
        return c0 + (c1 - c0) * (moment - t0) / (t1 - t0)

    def __enter__(self) -> ProcWatch:
        self.rss_before = benchlib.rss_mib(self.pid)
        self.cpu_before = benchlib.cpu_seconds(self.pid)
        self.t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu = benchlib.cpu_seconds(self.pid) - self.cpu_before
        self.wall = time.perf_counter() - self.t0


def steady_state(
    results: Sequence[dict[str, Any] | BaseException], watches: dict[str, ProcWatch]
) -> dict[str, Any] | None:
    """CPU per token while every stream receives and none starts or ends: from the last stream's first token to
    the first stream's last one (0.5 s inside each end). No turn is prepared or finished in that window, so this
    is the relay's own cost, apart from the per-turn work a whole run spreads over its tokens. None when the
    streams never all overlapped for 2 s (short answers, or a ramp as long as an answer)."""
    streams = [
        [r["start"] + t for t in r["times"]["word"]]
        for r in results
        if not isinstance(r, BaseException) and r["status"] == "200" and r["times"]["word"]
    ]
    if not streams:
        return None
    begin = max(times[0] for times in streams) + 0.5
    end = min(times[-1] for times in streams) - 0.5
    if end - begin < 2:
        return None
    tokens = sum(bisect.bisect_left(times, end) - bisect.bisect_left(times, begin) for times in streams)
    processes = {}
    for name, watch in watches.items():
        cpu = watch.cpu_at(end) - watch.cpu_at(begin)
        processes[name] = {
            "cpu_seconds": round(cpu, 2),
            "us_per_token": round(cpu / tokens * 1e6, 1) if tokens else None,
        }
    return {"streams": len(streams), "seconds": round(end - begin, 2), "tokens": tokens, "processes": processes}


def print_steady_state(phases: dict[str, dict[str, Any]], relay: str) -> tuple[float, float, float] | None:
    """Print each phase's steady state (`steady_state`); return the last phase's `relay` process's µs per token,
    the upstream's in that window, and their ratio (None when the last phase had no steady state)."""
    rows = []
    for phase_name, phase in phases.items():
        steady = phase["steady_state"]
        if steady is None:
            continue
        for name, proc in steady["processes"].items():
            rows.append(
                [phase_name, name, steady["seconds"], steady["tokens"], proc["cpu_seconds"], proc["us_per_token"]]
            )
    if rows:
        benchlib.print_table(
            "Steady state: every stream receiving, none starting or ending (the relay's own cost)",
            ["phase", "process", "window s", "tokens", "CPU s", "µs CPU / token"],
            rows,
        )
    last = list(phases.values())[-1]["steady_state"]
    if last is None:
        return None
    ours, upstream = last["processes"][relay]["us_per_token"], last["processes"]["upstream"]["us_per_token"]
    if not ours or not upstream:
        return None
    return ours, upstream, ours / upstream
