"""glibc's malloc arenas, capped for the server process.

glibc gives each new thread a malloc arena of its own, up to eight per core, and memory freed in one arena is
never reused by another. In this service the worker threads (retrieval, the embedder, SQLite) allocate each
turn's hits and payloads, so their arenas grow with the streams open while free space in the main heap sits
unused: with 300 streams held open, RSS grew 110–116 KiB a stream with glibc's default and 74–97 KiB with two
arenas, for the same live data (BENCHMARKS.md, "Memory per stream and collector pauses"). Two, not one, so the event
loop and the threads do not all queue on one lock; MALLOC_ARENA_MAX=2 is the same cap, set from outside.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h


def limit_malloc_arenas(count: int) -> bool:
    """Caps the arenas created from now on (call before the process starts threads); False where the C library
    is not glibc or `count` is 0 (the library's default kept)."""
    if count <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a C library without mallopt: nothing to cap
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(_M_ARENA_MAX, count))
    if not applied:
        log.info("malloc arenas: the C library did not take a cap of %d (not glibc?)", count)
    return applied
