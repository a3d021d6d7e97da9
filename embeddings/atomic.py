"""Write a file so that readers see the old one or the whole new one, never half.

The one atomic writer of the project: checkpoints and feature caches (shared
between processes: two trainings side by side, an ingest reading a checkpoint a
training is writing), heatmap PNGs, and the FAISS index (which also asks for
``durable``: it must survive a power cut, not only a crash). The temporary name is
unique per process and thread, so two writers never rename each other's
half-written file, and a failed write leaves no temporary behind.

It imports only the standard library, so the catalog may use it too
(``tests/test_layers.py``, ``SHARED_LEAVES``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(
    path: Path,
    write: Callable[[BinaryIO], object] | bytes,
    *,
    durable: bool = False,
    parents: bool = False,
) -> Path:
    """Write ``write`` (bytes, or a function given the open file) beside ``path``, rename it.

    ``durable``: fsync the file before the rename and the directory after it, so the
    new content is on disk when this returns. ``parents``: create missing folders.
    """
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            if isinstance(write, bytes | bytearray | memoryview):
                fh.write(write)
            else:
                write(fh)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path
