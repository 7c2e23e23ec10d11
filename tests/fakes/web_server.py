"""A real HTTP server on 127.0.0.1 for channel tests: resources the test puts, edits and removes, each with an ETag
and a Last-Modified (If-None-Match / If-Modified-Since answered with 304), faults on chosen paths (a status, a
stall, a slow drip, a huge body, a truncated body, redirects), and a log of every request it answered."""

from __future__ import annotations

import email.utils
import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(slots=True)
class Resource:
    body: bytes
    content_type: str
    modified: float
    etag: str | None
    last_modified: bool = True


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str  # status, stall, drip, big, truncate, redirect
    status: int = 500
    seconds: float = 0.0
    size: int = 0
    declare_length: bool = True
    location: str = ""


@dataclass(frozen=True, slots=True)
class Logged:
    path: str
    status: int
    agent: str = ""


@dataclass(slots=True)
class WebServer:
    resources: dict[str, Resource] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    log: list[Logged] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _clock: float = 0.0

    # ---- what a test sets up ----------------------------------------------------------------------------------

    def put(
        self, path: str, body: str | bytes, content_type: str, *, etag: bool = True, last_modified: bool = True
    ) -> None:
        """Serve `body` at `path`; an edit gets a new ETag and a Last-Modified at least a second later (HTTP dates
        have whole seconds), so a conditional request sees it."""
        data = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._clock = max(time.time(), self._clock + 1.0)
            tag = f'"{hashlib.sha256(data).hexdigest()[:16]}"' if etag else None
            self.resources[path] = Resource(data, content_type, self._clock, tag, last_modified)
            self.faults.pop(path, None)

    def remove(self, path: str) -> None:
        with self._lock:
            self.resources.pop(path, None)

    def fault(self, path: str, fault: Fault) -> None:
        with self._lock:
            self.faults[path] = fault

    def heal(self, path: str) -> None:
        with self._lock:
            self.faults.pop(path, None)

    def url(self, path: str = "/") -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def requests(self, since: int = 0) -> list[Logged]:
        with self._lock:
            return list(self.log[since:])

    # ---- running ----------------------------------------------------------------------------------------------

    @contextmanager
    def running(self) -> Iterator[WebServer]:
        server = _QuietServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    def _record(self, path: str, status: int, agent: str = "") -> None:
        with self._lock:
            self.log.append(Logged(path, status, agent))


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a limit, a deadline, a closed keep-alive connection) is not news."""


def _handler(site: WebServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("#", 1)[0]
            with site._lock:
                fault = site.faults.get(path)
                resource = site.resources.get(path)
            try:
                if fault is not None:
                    self._fault(path, fault)
                elif resource is None:
                    self._send(path, 404, b"not found", "text/plain")
                else:
                    self._serve(path, resource)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a limit, a deadline): that is the point of the fault

        def _log(self, path: str, status: int) -> None:
            site._record(path, status, self.headers.get("User-Agent", ""))

        def _serve(self, path: str, resource: Resource) -> None:
            modified = email.utils.formatdate(resource.modified, usegmt=True)
            match = resource.etag is not None and self.headers.get("If-None-Match") == resource.etag
            since = self.headers.get("If-Modified-Since")
            if since and resource.last_modified and self.headers.get("If-None-Match") is None:
                parsed = email.utils.parsedate_to_datetime(since).timestamp()
                match = int(resource.modified) <= int(parsed)
            headers = {}
            if resource.etag:
                headers["ETag"] = resource.etag
            if resource.last_modified:
                headers["Last-Modified"] = modified
            if match:
                self._log(path, 304)
                self.send_response(304)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                return
            self._send(path, 200, resource.body, resource.content_type, headers)

        def _send(
            self, path: str, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
        ) -> None:
            self._log(path, status)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _fault(self, path: str, fault: Fault) -> None:
            if fault.kind == "status":
                self._send(path, fault.status, b"server error", "text/plain")
            elif fault.kind == "redirect":
                self._log(path, fault.status)
                self.send_response(fault.status)
                self.send_header("Location", fault.location)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif fault.kind == "stall":
                self._log(path, 0)
                time.sleep(fault.seconds)
                self.close_connection = True
            elif fault.kind == "drip":
                self._log(path, 200)
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                deadline = time.monotonic() + 30
                self.wfile.write(b"<?xml version='1.0'?><rss version='2.0'><channel>")
                while time.monotonic() < deadline:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(fault.seconds)
            elif fault.kind == "big":
                self._log(path, 200)
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                if fault.declare_length:
                    self.send_header("Content-Length", str(fault.size))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                block = b"<!-- padding -->" * 4096
                sent = 0
                while sent < fault.size:
                    self.wfile.write(block[: fault.size - sent])
                    sent += len(block)
            elif fault.kind == "truncate":
                self._log(path, 200)
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(fault.size))
                self.end_headers()
                self.wfile.write(b"<?xml version='1.0'?><urlset>")
                self.wfile.flush()
                self.close_connection = True
            else:
                raise AssertionError(fault.kind)

    return Handler
