"""Supervises the local model's own process: start, prove it decodes, measure its speed, restart, stop.

States: starting → ready, or → broken (the library crashed or failed while proving itself: the tier is
disabled until the next start of the service, and one log line says why). A ready process that exits
(crash, kill) is restarted with exponential back-off; meanwhile the tier is `restarting` and the cascade
skips it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import httpx

from backend.chat.tokens import count_tokens
from backend.metrics import LOCAL_MODEL_PROMPT_SPEED, LOCAL_MODEL_READY, LOCAL_MODEL_RESTARTS

log = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 120.0  # loading a model from a cold disk on a busy machine
PROBE_TIMEOUT_SECONDS = 120.0
BACKOFF_START_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0


class ModelState(StrEnum):
    starting = "starting"
    ready = "ready"
    restarting = "restarting"
    broken = "broken"
    stopped = "stopped"


@dataclass(frozen=True, slots=True)
class PromptSpeed:
    """How fast this model reads a prompt on this machine, measured at warm-up."""

    tokens_per_second: float  # model tokens of prompt read per second
    overhead_seconds: float  # fixed cost of a request (HTTP, template, first sampled token)
    model_tokens_per_cl100k: float  # the model's tokenizer vs the cl100k counts our prompt budgets use

    def seconds_for(self, cl100k_tokens: int) -> float:
        return self.overhead_seconds + cl100k_tokens * self.model_tokens_per_cl100k / self.tokens_per_second

    def cl100k_tokens_within(self, seconds: float) -> int:
        """The longest prompt (cl100k tokens) whose first token is expected within `seconds`."""
        room = max(0.0, seconds - self.overhead_seconds) * self.tokens_per_second
        return int(room / self.model_tokens_per_cl100k)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _probe_text(words: int, seed: int) -> str:
    """Plain prose of a known length, different for each probe (no shared prefix in the model's cache)."""
    parts = [f"Batch {seed + i} of the dough rested {(seed * 7 + i * 13) % 90 + 5} minutes." for i in range(words)]
    return " ".join(parts)


def _signal_name(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-returncode).name
    return f"exit code {returncode}"


class ModelProcess:
    """One supervised `llama_cpp.server` child on a free loopback port."""

    def __init__(self, *, name: str, model_path: Path, context_window: int, n_threads: int) -> None:
        self.name = name
        self.model_path = model_path
        self.context_window = context_window
        self.n_threads = n_threads
        self.state = ModelState.stopped
        self.problem = ""  # why the model is not ready, for logs, /readyz and `lorechat doctor`
        self.speed: PromptSpeed | None = None
        self.base_url = ""
        self.restarts = 0
        self.on_ready: Callable[[], None] | None = None  # called each time a (re)started process is ready
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._settled = asyncio.Event()  # set once the first start ended: ready or broken
        self._log_file = Path(tempfile.gettempdir()) / f"lorechat-model-{os.getpid()}-{name}.log"

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start supervising in the background; the API does not wait for the model to load."""
        if self._supervisor is None:
            self.state = ModelState.starting
            self._supervisor = asyncio.create_task(self._supervise(), name=f"model-{self.name}")

    async def wait_settled(self, within: float) -> ModelState:
        """Wait (bounded) until the first start is ready or known broken; returns the state."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._settled.wait()
        return self.state

    async def wait_ready(self, within: float) -> bool:
        """Wait (bounded) until the process is ready, e.g. again after a restart."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._ready.wait()
        return self.state is ModelState.ready

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
            self._supervisor = None
        await self._terminate()
        self.state = ModelState.stopped
        LOCAL_MODEL_READY.labels(self.name).set(0)
        self._ready.clear()

    def kill(self) -> None:
        """SIGKILL the model process (it is stuck); the supervisor notices and restarts it."""
        if self._process is not None and self._process.returncode is None:
            log.warning("local model %s stopped responding; killing pid %s", self.name, self._process.pid)
            self._process.kill()
            # Not ready from now on, before the supervisor even sees the exit: nobody should be sent to it.
            self._ready.clear()
            self.state, self.problem = ModelState.restarting, "killed: it stopped responding"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.returncode is None else None

    # -- supervision -----------------------------------------------------------------------------------
    async def _supervise(self) -> None:
        backoff = BACKOFF_START_SECONDS
        while True:
            started = time.monotonic()
            try:
                await self._launch()
                self.speed = await self._probe()
            except _Broken as exc:
                # The library itself failed on a real decode: restarting would crash the same way.
                self.state, self.problem = ModelState.broken, str(exc)
                log.error("local model %s disabled: %s; the service answers with its other tiers", self.name, exc)
                await self._terminate()
                self._settled.set()
                return
            self.state, self.problem = ModelState.ready, ""
            LOCAL_MODEL_READY.labels(self.name).set(1)
            LOCAL_MODEL_PROMPT_SPEED.labels(self.name).set(self.speed.tokens_per_second)
            self._ready.set()
            self._settled.set()
            if self.on_ready is not None:
                self.on_ready()
            log.info(
                "local model %s ready (pid %s): reads %.0f prompt tokens/s, %.2f s overhead",
                self.name, self.pid, self.speed.tokens_per_second, self.speed.overhead_seconds,
            )  # fmt: skip
            assert self._process is not None
            returncode = await self._process.wait()
            self._ready.clear()
            LOCAL_MODEL_READY.labels(self.name).set(0)
            LOCAL_MODEL_RESTARTS.labels(self.name).inc()
            self.state, self.problem = ModelState.restarting, f"model process ended ({_signal_name(returncode)})"
            self.restarts += 1
            if time.monotonic() - started > 60:
                backoff = BACKOFF_START_SECONDS  # it ran fine for a while: this is not a crash loop
            log.warning("local model %s %s; restarting in %.0f s", self.name, self.problem, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

    async def _launch(self) -> None:
        port = _free_port()
        command = [sys.executable, "-m", "backend.chat.tiers.llama_cpp_child", "--model", str(self.model_path)]
        command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(self.context_window)]
        command += ["--n_threads", str(self.n_threads), "--model_alias", self.name]
        # One generation at a time; a second request waits instead of cutting the first one off.
        command += ["--interrupt_requests", "false", "--verbose", "false"]
        env = {**os.environ, "LORECHAT_PARENT_PID": str(os.getpid())}
        # A file, not a pipe: nobody reads the model's logs while it runs, and a full pipe would block it.
        with self._log_file.open("wb") as log_file:
            self._process = await asyncio.create_subprocess_exec(
                *command, stdout=log_file, stderr=asyncio.subprocess.STDOUT, env=env, start_new_session=True
            )
        self.base_url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if self._process.returncode is not None:
                    raise _Broken(f"the model server exited while loading ({self._tail()})")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.base_url}/models")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise _Broken(f"the model server did not load within {READY_TIMEOUT_SECONDS:.0f} s")
                await asyncio.sleep(0.2)

    async def _probe(self) -> PromptSpeed:
        """Two real multi-token decodes (a short and a long prompt) prove the library works on this CPU
        and give its prompt-reading speed: the difference cancels the fixed per-request cost."""
        short_text, long_text = _probe_text(4, seed=1), _probe_text(30, seed=101)
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_SECONDS) as client:
            await self._complete(client, _probe_text(8, seed=500))  # the first request pays one-off set-up
            # The best of two of each: the cores are shared, and a slow outlier is not the model's speed.
            short_tokens, short_seconds = await self._complete(client, short_text)
            long_tokens, long_seconds = await self._complete(client, long_text)
            short_seconds = min(short_seconds, (await self._complete(client, _probe_text(4, seed=11)))[1])
            long_seconds = min(long_seconds, (await self._complete(client, _probe_text(30, seed=201)))[1])
        read = max(long_seconds - short_seconds, 1e-3)
        tokens_per_second = max((long_tokens - short_tokens) / read, 1.0)
        overhead = max(0.0, short_seconds - short_tokens / tokens_per_second)
        cl100k = max(count_tokens(long_text) - count_tokens(short_text), 1)
        ratio = max((long_tokens - short_tokens) / cl100k, 0.5)
        return PromptSpeed(
            tokens_per_second=tokens_per_second, overhead_seconds=overhead, model_tokens_per_cl100k=ratio
        )

    async def _complete(self, client: httpx.AsyncClient, text: str) -> tuple[int, float]:
        body = {
            "model": self.name,
            "messages": [{"role": "user", "content": f"Summarise in one word: {text}"}],
            "max_tokens": 2,
            "temperature": 0,
        }
        started = time.perf_counter()
        try:
            response = await client.post(f"{self.base_url}/chat/completions", json=body)
        except httpx.TransportError:
            await asyncio.sleep(0.2)  # let the exit status arrive
            raise _Broken(
                f"llama-cpp-python crashed decoding a multi-token prompt on this CPU ({self._exit()}); "
                "rebuild it with scripts/setup"
            ) from None
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise _Broken(f"the model server answered HTTP {response.status_code} to a probe")
        usage = response.json().get("usage") or {}
        tokens = int(usage.get("prompt_tokens") or 0)
        if tokens < 2:
            raise _Broken("the model server reported no prompt tokens for a probe")
        return tokens, elapsed

    def _exit(self) -> str:
        return _signal_name(self._process.returncode if self._process is not None else None)

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = self._log_file.read_text(errors="replace").strip().splitlines()
            if lines:
                return f"{self._exit()}: {lines[-1][:200]}"
        return self._exit()

    async def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


class _Broken(Exception):
    """The model cannot work on this machine (crash or failure while proving itself)."""
