"""A real uvicorn serving an app on a free 127.0.0.1 port from a background thread, lifespan included."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from backend.stream.server import uvicorn_config


class LiveServer:
    """uvicorn serving the app on a free 127.0.0.1 port from a background thread (lifespan included)."""

    def __init__(self, app: Any) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        options: dict[str, Any] = {
            "loop": "asyncio",
            "lifespan": "on",
            "log_level": "warning",
            "access_log": False,
            "timeout_graceful_shutdown": 3,
        }
        settings = getattr(getattr(app, "state", None), "settings", None)
        # Served as `lorechat serve` serves it (bounded request heads, L5) when the app carries its settings.
        config = uvicorn_config(app, settings.server, **options) if settings else uvicorn.Config(app, **options)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 120
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app did not start (see the captured log)")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=20)
        assert not self._thread.is_alive(), "uvicorn did not shut down"

    @property
    def state(self) -> dict[str, Any]:
        """The lifespan's State (the objects every request sees), for test instrumentation only."""
        return self._server.lifespan.state
