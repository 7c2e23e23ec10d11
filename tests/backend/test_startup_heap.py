"""The frozen startup heap of `lorechat serve` (backend/startup_heap.py, Server(freeze_startup_heap=…)).

Checked in a child process: freezing is process-wide and would keep this test process's objects out of the
collector for the rest of the suite. The child serves a small ASGI app with backend.stream.server.Server, as `lorechat
serve` does, and reports what the collector sees once the server has started.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

_CHILD = """
import asyncio, gc, json, socket, sys
from backend.stream.server import Server, uvicorn_config
from backend.settings import ServerSettings

built_at_startup = []

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        built_at_startup.extend({"model part": [i]} for i in range(50_000))  # what a lifespan builds and keeps
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

async def main(freeze):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn_config(app, ServerSettings(), log_level="warning", lifespan="on")
    server = Server(config, freeze_startup_heap=freeze)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    tracked = {id(o) for o in gc.get_objects()}  # what later collections walk (the frozen generation is not in it)
    seen = sum(1 for part in built_at_startup if id(part) in tracked)
    print(json.dumps({"frozen": gc.get_freeze_count(), "startup_objects_walked": seen}))
    server.should_exit = True
    await serving

asyncio.run(main(sys.argv[1] == "on"))
"""

_REPO = Path(__file__).resolve().parents[2]


def _serve(mode: str) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode], cwd=_REPO, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["on", "off"])
def test_the_objects_built_at_startup_leave_the_collector_only_when_frozen(mode: str) -> None:
    seen = _serve(mode)
    if mode == "on":
        assert seen["frozen"] >= 50_000 and seen["startup_objects_walked"] == 0
    else:
        assert seen["frozen"] == 0 and seen["startup_objects_walked"] == 50_000
