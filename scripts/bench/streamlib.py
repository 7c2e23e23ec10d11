"""The chat benches' shared parts: the scripted upstream and the service as their own processes, the demo corpus
ingested for them, and a raw-socket client that time-stamps what each stream carries (the chat, turn_cost and
replicas benches)."""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from scripts.bench import benchlib
from scripts.bench.proc_cpu import ProcWatch, steady_state

TOKEN_MARK = b"event: token"
SOURCES_MARK = b"event: sources"
END_MARKS = (b"event: done", b"event: error")
UPSTREAM_TOKEN_MARK = b'"delta": {"content"'
# Each upstream token is this word, found nowhere in the demo corpus: counting it counts tokens delivered. One of
# the model's word pieces (a made-up word took four), so novel answers embed as real text does.
WORD = " zebra"
WORD_MARK = WORD.strip().encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the two server processes ------------------------------------------------------------------------


class NovelAnswers(Sequence[str]):
    """Answers `tokens` long that are new text each time the upstream reads them (once a request), made to cost the
    claim check what a model's new answer costs. Each sentence is a claim the sources' words do not back (eight
    words found nowhere in the demo corpus between the marker words, no number), so it is embedded, as a model's
    paraphrasing sentence is; ~1.5 of the model's word pieces a token, as English text has ~1.3 (sentences of a
    made-up word cost three times that, and the check with them). Each token still holds the marker word once."""

    def __init__(self, tokens: int, *, sentence_words: int = 16) -> None:
        self._tokens = tokens
        self._sentence_words = sentence_words
        self._answers = itertools.count(1)

    def __len__(self) -> int:
        return self._tokens

    def __getitem__(self, index: Any) -> Any:
        return list(self)[index]

    def __iter__(self) -> Iterator[str]:
        answer = _letters(next(self._answers))
        return (self._token(k, answer) for k in range(self._tokens))

    def _token(self, k: int, answer: str) -> str:
        sentence, place = divmod(k, self._sentence_words)
        if place % 2 == 0:
            return WORD
        word = _CLAIM_WORDS[(sentence + place // 2) % len(_CLAIM_WORDS)]
        if place == self._sentence_words - 1:  # the sentence's end: lettered, so no two sentences are one
            return f"{WORD} {word}{answer}{_letters(sentence)}."
        return f"{WORD} {word}"


_CLAIM_WORDS = (
    "violin", "glacier", "saddle", "lantern", "orbit", "meadow", "harbor", "canyon", "velvet", "thunder", "falcon",
    "compass", "willow",
)  # fmt: skip


def _letters(number: int) -> str:
    """`number` in base 26 as lowercase letters: a word part that no number reading takes for a quantity."""
    letters = ""
    while True:
        number, digit = divmod(number, 26)
        letters = chr(ord("a") + digit) + letters
        if not number:
            return letters


def serve_upstream(port_file: Path, tokens: int, first_delay: float, interval: float, *, novel: bool = False) -> None:
    from tests.fakes.openai_server import Script, ScriptedOpenAI

    words: Sequence[str] = NovelAnswers(tokens) if novel else [WORD] * tokens
    fake = ScriptedOpenAI(default=Script(tokens=words, first_token_delay=first_delay, token_interval=interval))
    fake.start()
    port_file.write_text(str(fake.port))
    threading.Event().wait()


def serve_service(
    port: int,
    data_dir: Path,
    upstream: str,
    database_url: str,
    coalesce: float,
    *,
    redis_url: str = "",
    resume_seconds: int = 600,
    malloc_arenas: int | None = None,
    freeze_startup_heap: bool = True,
    native_token_path: bool = True,
    embedding_threads: int = 0,
    quantized_queries: bool = True,
) -> None:

    from backend.app import create_app
    from backend.malloc_arenas import limit_malloc_arenas
    from backend.settings import (
        DatabaseSettings,
        EmbeddingSettings,
        LimitSettings,
        LLMSettings,
        OpenAITierSettings,
        RedisSettings,
        ServerSettings,
        Settings,
    )
    from backend.stream.server import Server, uvicorn_config

    # The scripted answers run past max_tokens (the length is the bench's), so the runaway cap is off.
    arenas: dict[str, Any] = {} if malloc_arenas is None else {"malloc_arenas": malloc_arenas}
    tier = OpenAITierSettings(name="bench", base_url=upstream, model="scripted", max_tokens=512, max_answer_chars=0)
    settings = Settings(
        data_dir=data_dir,
        log_level="WARNING",
        llm=LLMSettings(tiers=[tier]),
        # Every bench stream comes from 127.0.0.1: hourly limits off, stream cap far above the load.
        limits=LimitSettings(user_per_hour=0, ip_per_hour=0, creator_per_hour=0, concurrent_streams_per_ip=100_000),
        server=ServerSettings(
            port=port,
            token_coalesce_seconds=coalesce,
            resume_seconds=resume_seconds,
            freeze_startup_heap=freeze_startup_heap,
            native_token_path=native_token_path,
            **arenas,
        ),
        database=DatabaseSettings(url=database_url, pool_size=20),
        redis=RedisSettings(url=redis_url),
        embedding=EmbeddingSettings(threads=embedding_threads, quantized_queries=quantized_queries),
    )
    # Served exactly as `lorechat serve` serves it: its malloc arenas, its frozen startup heap and uvicorn_config's
    # bounded request heads (L5) included.
    limit_malloc_arenas(settings.server.malloc_arenas)
    config = uvicorn_config(
        create_app(settings), settings.server, host="127.0.0.1", port=port, log_level="warning", access_log=False,
        backlog=4096,
    )  # fmt: skip
    Server(config, freeze_startup_heap=settings.server.freeze_startup_heap).run()


def ingest_demo(data_dir: Path, database_url: str) -> None:
    from backend.retrieval.embedder import get_embedder
    from backend.retrieval.search import Retriever
    from backend.retrieval.stores.edge import EdgeStore
    from backend.settings import ChunkingSettings, EmbeddingSettings, RetrievalSettings

    store = EdgeStore(data_dir / "index", hnsw_ef=128)
    retriever = Retriever(embedder=get_embedder(EmbeddingSettings()), store=store, settings=RetrievalSettings())
    chunking = ChunkingSettings(size_tokens=256, overlap_tokens=32)
    # The catalog goes to the database the service will use.
    benchlib.indexer(retriever, data_dir, chunking, database_url=database_url).ingest([benchlib.DEMO_CONTENT])
    store.close()


# --- the client ----------------------------------------------------------------------------------------


async def stream_once(
    port: int, path: str, body: dict[str, Any], marks: dict[str, bytes], *, stop_on: str | None = None
) -> dict[str, Any]:
    """POST and read the response as it arrives, time-stamping every chunk that carries a mark; with `stop_on`,
    hang up as soon as that mark was seen (the sequential phase needs only the first token)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = json.dumps(body).encode()
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
        + payload
    )
    t0 = time.perf_counter()
    await writer.drain()
    seen: dict[str, list[float]] = {name: [] for name in marks}
    status = b""
    tail = b""
    head = last = b""
    while True:
        data = await reader.read(65536)
        if not data:
            break
        now = time.perf_counter() - t0
        if not status:
            status = data[9:12]
        if len(head) < 1500:
            head = (head + data)[:1500]  # headers and body may arrive in separate reads
        last = (last + data)[-800:]
        window = tail + data
        for name, mark in marks.items():
            # Count marks in the new bytes only (the tail just catches a mark split across reads).
            count = window.count(mark) - tail.count(mark)
            seen[name].extend([now] * count)
        tail = data[-64:]
        if stop_on is not None and seen[stop_on]:
            break
    writer.close()
    return {"status": status.decode(errors="replace"), "times": seen, "start": t0, "head": head, "last": last}


_CODE = re.compile(rb'"code":\s*"([a-z_]+)"')


def outcome(result: dict[str, Any] | BaseException, mark: str) -> str:
    """'ok', or why a stream failed: HTTP status and error code, or the code of an in-stream error event."""
    if isinstance(result, BaseException):
        return f"client {type(result).__name__}"
    if result["status"] != "200":
        code = _CODE.search(result["head"])
        return f"HTTP {result['status']} {code.group(1).decode() if code else ''}".strip()
    if b"event: error" in result["last"]:
        code = _CODE.search(result["last"][result["last"].rfind(b"event: error") :])
        return f"error event {code.group(1).decode() if code else ''}".strip()
    return "ok" if result["times"][mark] else "no tokens"


def upstream_body() -> dict[str, Any]:
    return {"model": "scripted", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def chat_body(i: int, questions: list[str], creators: list[str], *, novel: bool = False) -> dict[str, Any]:
    """The i-th visitor's turn; `novel`: a question no earlier turn asked (the eval question, and who asks it)."""
    question = questions[i % len(questions)]
    body: dict[str, Any] = {"query": f"{question} I am visitor {i}." if novel else question}
    if i % 2:
        body["creator"] = creators[i % len(creators)]
    return body


async def concurrent(
    port: int | list[int], path: str, n: int, ramp: float, body: Any, marks: dict[str, bytes], pids: dict[str, int]
) -> dict[str, Any]:
    """N streams opened over `ramp` seconds (spread over the ports in turn, when several replicas serve); every
    process in `pids` watched for CPU and RSS meanwhile."""
    ports = port if isinstance(port, list) else [port]

    async def one(i: int) -> dict[str, Any]:
        await asyncio.sleep(ramp * i / n)
        return await stream_once(ports[i % len(ports)], path, body(i), marks)

    watches = {name: ProcWatch(pid) for name, pid in pids.items()}
    for watch in watches.values():
        watch.__enter__()
    try:
        results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    finally:
        for watch in watches.values():
            watch.__exit__()
    gaps: list[float] = []
    to_sources: list[float] = []
    failed = 0
    tokens = 0
    spans: list[tuple[float, int]] = []
    outcomes = collections.Counter(outcome(r, "tok") for r in results)
    for r in results:
        if isinstance(r, BaseException) or r["status"] != "200" or not r["times"]["tok"]:
            failed += 1
            continue
        times = r["times"]["tok"]
        tokens += len(r["times"]["word"])  # upstream tokens: several may share one coalesced `token` event
        if r["times"].get("src"):
            to_sources.append(r["times"]["src"][0])
        spans += [(r["start"] + times[0], 1), (r["start"] + times[-1], -1)]
        gaps.extend(b - a for a, b in itertools.pairwise(times))
    open_now = peak_open = 0
    for _, delta in sorted(spans):
        open_now += delta
        peak_open = max(peak_open, open_now)
    return {
        "streams": n,
        "peak_streams_receiving_tokens": peak_open,
        "failed": failed,
        "outcomes": dict(outcomes),
        "tokens": tokens,
        "gap": benchlib.summary_ms(gaps),
        "time_to_sources": benchlib.summary_ms(to_sources) if to_sources else None,
        "processes": {
            name: {
                "cpu_seconds": round(watch.cpu, 2),
                "cpu_cores_busy": round(watch.cpu / watch.wall, 3),
                "us_per_token": round(watch.cpu / tokens * 1e6, 1) if tokens else None,
                "rss_mib_before": round(watch.rss_before, 1),
                "peak_rss_mib": round(watch.peak_rss, 1),
            }
            for name, watch in watches.items()
        },
        "wall_seconds": round(max(watch.wall for watch in watches.values()), 2),
        "steady_state": steady_state(results, watches),
    }


def start_upstream(argv: list[str], port_file: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The scripted upstream as its own process (`argv`, from `benchlib.module_argv`, runs `serve_upstream`, which
    writes its port to `port_file`), once it listens: (process, port)."""
    proc = subprocess.Popen(argv, cwd=benchlib.REPO)
    while not port_file.exists() or not port_file.read_text():
        if proc.poll() is not None:
            raise RuntimeError(f"upstream process exited with {proc.returncode}")
        time.sleep(0.1)
    return proc, int(port_file.read_text())


def start_service(argv: list[str], port: int, *, checkout: Path | None = None) -> subprocess.Popen[bytes]:
    """The service as its own process (`argv`, from `benchlib.module_argv`, runs `serve_service` on `port`) on the
    bench's settings alone (no config.yaml), once it listens. `checkout`: another set-up checkout whose interpreter
    and code serve instead (`argv[0]`, the interpreter, is replaced by its own)."""
    if checkout is not None:
        argv = [str(checkout / ".venv" / "bin" / "python"), *argv[1:]]
    env = {**os.environ, "LORECHAT_CONFIG": os.devnull}
    proc = subprocess.Popen(argv, env=env, cwd=checkout or benchlib.REPO)
    try:
        wait_port(port, proc)
    except BaseException:
        stop([proc])
        raise
    return proc


def stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Terminate, then kill what has not exited within 15 s."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server process exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError("server did not start")
