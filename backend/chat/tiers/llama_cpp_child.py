"""Entry point of the local model's own process: llama-cpp-python's OpenAI-compatible server.

The API never loads native model code itself: a segfault, abort or hang in llama.cpp ends this process,
not the API and its open streams. The parent (`model_process.ModelProcess`) starts, probes, restarts
and stops it. Run as `python -m backend.chat.tiers.llama_cpp_child <llama_cpp.server arguments>`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: the kernel kills us when the API process dies, even by SIGKILL (no orphaned model server)."""
    parent = int(os.environ.get("LORECHAT_PARENT_PID", "0"))
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent and os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def main() -> None:
    _die_with_parent()
    from llama_cpp.server.__main__ import main as serve  # the SDK is imported here only, never by the API

    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    serve()


if __name__ == "__main__":
    main()
