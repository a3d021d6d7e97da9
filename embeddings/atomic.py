"""Write a file so that readers see the old one or the whole new one, never half.

Feature caches and checkpoints are shared between processes (two trainings side
by side, an ingest reading a checkpoint a training is writing), so the temporary
name is unique per process and thread: two writers never rename each other's
half-written file, and a failed write leaves no temporary behind.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
