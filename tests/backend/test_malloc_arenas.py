"""The malloc arena cap of `lorechat serve`, checked on glibc itself: threads started after it share the cap's
arenas instead of getting one each."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backend.malloc_arenas import limit_malloc_arenas

# A child process (the cap is process-wide and one-way) caps arenas, starts threads that each allocate, and asks
# glibc to print its arenas (malloc_stats writes one "Arena N:" block per arena to stderr).
_CHILD = """
import ctypes, sys, threading
from backend.malloc_arenas import limit_malloc_arenas
print(limit_malloc_arenas(int(sys.argv[1])), flush=True)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
held, ready, go = [], threading.Barrier(7), threading.Event()
def allocate():
    ready.wait()  # all six threads alive at once, each allocating from its own arena if it may
    held.append(libc.malloc(4096))
    go.wait()
threads = [threading.Thread(target=allocate) for _ in range(6)]
for thread in threads:
    thread.start()
ready.wait()
go.set()
for thread in threads:
    thread.join()
libc.malloc_stats()
"""

_REPO = Path(__file__).resolve().parents[2]

glibc_only = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's"
)


def _arenas(cap: int) -> tuple[str, int]:
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(cap)], capture_output=True, text=True, check=True, cwd=_REPO
    )
    return child.stdout.strip(), len(re.findall(r"^Arena \d+:", child.stderr, flags=re.MULTILINE))


@glibc_only
def test_threads_share_the_capped_arenas() -> None:
    applied, capped = _arenas(2)
    default, uncapped = _arenas(0)
    assert (applied, default) == ("True", "False")
    assert capped == 2
    assert uncapped > 2  # glibc's default: an arena per thread, up to 8 a core


def test_zero_keeps_the_default() -> None:
    assert limit_malloc_arenas(0) is False
