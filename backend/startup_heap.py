"""The heap built at startup, kept out of Python's cyclic garbage collector for the life of the server process.

Startup leaves a few hundred thousand long-lived objects (modules, the embedding model's tokenizer and session
wrappers, the index client, the settings, the ORM's metadata). A full collection walks all of them, and it runs
on the event loop: during 600 open streams one took ~0.5 s, stalling every stream at once (BENCHMARKS.md, "Memory per
stream and collector pauses"). `gc.freeze()` after startup moves them to a generation the collector never walks, so
later collections only see what the streams themselves allocate. They are alive for the whole process anyway; garbage
made before the freeze is collected first.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def freeze_startup_heap() -> int:
    """Collect once, then freeze every object still alive; returns how many were frozen."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    took_ms = (time.perf_counter() - started) * 1000
    log.info("startup heap: %d objects kept out of the collector (%.0f ms)", frozen, took_ms)
    return frozen
