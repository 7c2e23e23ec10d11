"""Copying an ingested data dir for a test's own app, keeping the Edge shard's files sparse.

An Edge shard preallocates its write-ahead log and vector files (32 MiB each) as sparse files: a 2 MiB index
occupies 2 MiB on disk but reads as ~180 MiB. `shutil.copytree` writes every byte, so each app's copy took
~180 MiB of real disk, and a full run's copies (kept by pytest for its last three runs) filled the disk of a
CI machine. This copies only a file's data extents and leaves its holes as holes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def copy_sparse(source: str, target: str) -> str:
    """shutil's copy_function: copy the data extents of `source` (SEEK_DATA/SEEK_HOLE), keep its holes."""
    with open(source, "rb") as reader, open(target, "wb") as writer:
        fd, size = reader.fileno(), os.fstat(reader.fileno()).st_size
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: nothing but a hole from here to the end
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            reader.seek(start)
            writer.seek(start)
            remaining = end - start
            while remaining:
                block = reader.read(min(remaining, 1 << 20))
                if not block:
                    break
                writer.write(block)
                remaining -= len(block)
            offset = end
        writer.truncate(size)
    shutil.copystat(source, target)
    return target


def copy_data_dir(source: Path, target: Path) -> Path:
    """A copy of `source` at `target` (which must not exist) that takes the disk space the original takes."""
    return Path(shutil.copytree(source, target, copy_function=copy_sparse))
