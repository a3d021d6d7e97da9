"""One writer per catalog: a second ``sonic ingest`` on the same data directory waits its turn."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class CatalogBusyError(RuntimeError):
    """Another process holds the catalog's write lock."""


@contextmanager
def catalog_lock(data_dir: Path, wait: bool = False) -> Iterator[None]:
    """Exclusive advisory lock; the OS drops it if the holder dies, even by SIGKILL."""
    path = Path(data_dir) / "ingest.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise CatalogBusyError(
                f"another ingest is already writing to {data_dir}; wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)
