"""A real OpenAI-compatible HTTP server for tests and benchmarks: streams scripted tokens, injects faults.

    with ScriptedOpenAI() as fake:
        fake.enqueue(Script(tokens=["Hi", " there"], first_token_delay=0.2))
        ... point an `openai` tier at fake.base_url ...
        assert len(fake.requests) == 1

Scripts are consumed one per request, in order; when the queue is empty `default` answers (by default it
echoes the words of the last message). It runs uvicorn in a background thread on a free 127.0.0.1 port.
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn

_Scope = dict[str, Any]


@dataclass(frozen=True)
class Script:
    # None: echo the words of the last message (up to the request's max_tokens).
    tokens: Sequence[str] | None = None
    first_token_delay: float = 0.0  # seconds before the first content chunk
    token_interval: float = 0.0  # seconds between content chunks
    status: int = 200  # non-200: answer this status with an OpenAI error body, no stream
    retry_after: float | None = None  # Retry-After header on a non-200 answer
    error_as_first_chunk: bool = False  # 200, then an error object as the first SSE event
    drop_after: int | None = None  # after K content chunks, cut the connection (no [DONE])
    stall_after: int | None = None  # after K content chunks, go silent until the client leaves
    usage: tuple[int, int] | None = None  # (prompt, completion) in the usage chunk; None: counted
    finish_reason: str = "stop"


class _Dropped(Exception):
    """Raised inside the app to make uvicorn abort the connection mid-body."""


@dataclass
class ScriptedOpenAI:
    default: Script = field(default_factory=Script)
    model: str = "scripted"
    requests: list[dict[str, Any]] = field(default_factory=list)
    streams_opened: int = 0
    streams_closed: int = 0
    # Streams that ended because the client went away before the script finished.
    disconnects: int = 0

    def __post_init__(self) -> None:
        self._scripts: collections.deque[Script] = collections.deque()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ---- control, from the test's thread
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def open_streams(self) -> int:
        with self._lock:
            return self.streams_opened - self.streams_closed

    def enqueue(self, *scripts: Script) -> None:
        self._scripts.extend(scripts)

    def wait_streams_closed(self, timeout: float = 5.0) -> bool:
        """True once every stream the server opened has ended (used to check upstream cleanup)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.open_streams == 0:
                return True
            time.sleep(0.01)
        return self.open_streams == 0

    def start(self) -> ScriptedOpenAI:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            interface="asgi3",
            log_level="critical",  # the deliberate connection drops would otherwise log tracebacks
            access_log=False,
            timeout_graceful_shutdown=1,
            backlog=4096,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("scripted OpenAI server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> ScriptedOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the ASGI app, on the server's thread
    async def _app(self, scope: _Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] != "POST" or scope["path"] not in ("/v1/chat/completions", "/chat/completions"):
            await _json(send, 404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        try:
            request = json.loads(body)
        except ValueError:
            await _json(send, 400, {"error": {"message": "bad json", "type": "invalid_request_error"}})
            return
        with self._lock:
            self.requests.append(request)
        script = self._scripts.popleft() if self._scripts else self.default
        if script.status != 200:
            headers = [] if script.retry_after is None else [(b"retry-after", str(script.retry_after).encode())]
            error = {"error": {"message": f"scripted {script.status}", "type": "server_error", "code": None}}
            await _json(send, script.status, error, headers)
            return
        tokens = list(script.tokens) if script.tokens is not None else _echo(request)
        if not request.get("stream"):
            await _json(send, 200, self._completion(request, script, tokens))
            return
        await self._stream(request, script, tokens, receive, send)

    async def _stream(
        self, request: dict[str, Any], script: Script, tokens: list[str], receive: Any, send: Any
    ) -> None:
        with self._lock:
            self.streams_opened += 1
        finished = False

        async def produce() -> None:
            nonlocal finished
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
                }
            )
            chunk_id = f"chatcmpl-{len(self.requests)}"
            await _event(send, self._chunk(chunk_id, {"role": "assistant", "content": ""}))
            if script.error_as_first_chunk:
                await _event(send, {"error": {"message": "scripted stream error", "type": "server_error"}})
                await _event(send, "[DONE]", last=True)
                finished = True
                return
            await asyncio.sleep(script.first_token_delay)
            for sent, token in enumerate(tokens):
                if sent and script.token_interval:
                    await asyncio.sleep(script.token_interval)
                if script.drop_after is not None and sent >= script.drop_after:
                    raise _Dropped
                if script.stall_after is not None and sent >= script.stall_after:
                    await asyncio.Event().wait()  # silent until the client disconnects
                await _event(send, self._chunk(chunk_id, {"content": token}))
            await _event(send, self._chunk(chunk_id, {}, finish=script.finish_reason))
            if (request.get("stream_options") or {}).get("include_usage"):
                prompt, completion = script.usage or (_prompt_words(request), len(tokens))
                usage = {"prompt_tokens": prompt, "completion_tokens": completion}
                usage["total_tokens"] = prompt + completion
                await _event(send, {**self._chunk(chunk_id, None), "choices": [], "usage": usage})
            await _event(send, "[DONE]", last=True)
            finished = True

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        producer = asyncio.ensure_future(produce())
        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (producer, watcher):
                task.cancel()
            await asyncio.gather(producer, watcher, return_exceptions=True)
            with self._lock:
                self.streams_closed += 1
                self.disconnects += 0 if finished else 1
        if producer.done() and not producer.cancelled() and isinstance(producer.exception(), _Dropped):
            raise _Dropped  # uvicorn closes the socket without ending the chunked body

    def _chunk(self, chunk_id: str, delta: dict[str, Any] | None, finish: str | None = None) -> dict[str, Any]:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        return {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
            "choices": choices,
        }

    def _completion(self, request: dict[str, Any], script: Script, tokens: list[str]) -> dict[str, Any]:
        prompt, completion = script.usage or (_prompt_words(request), len(tokens))
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(tokens)},
                    "finish_reason": script.finish_reason,
                }
            ],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }


def _echo(request: dict[str, Any]) -> list[str]:
    messages = request.get("messages") or [{}]
    words = str(messages[-1].get("content", "")).split()
    limit = request.get("max_tokens") or request.get("max_completion_tokens") or len(words)
    return [word if i == 0 else f" {word}" for i, word in enumerate(words[:limit])] or ["ok"]


def _prompt_words(request: dict[str, Any]) -> int:
    return sum(len(str(m.get("content", "")).split()) for m in request.get("messages") or [])


async def _event(send: Any, data: dict[str, Any] | str, *, last: bool = False) -> None:
    payload = data if isinstance(data, str) else json.dumps(data)
    await send({"type": "http.response.body", "body": f"data: {payload}\n\n".encode(), "more_body": not last})


async def _json(send: Any, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
