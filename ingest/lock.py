"""One writer per catalog: a second ``sonic ingest`` on the same data directory is refused.

The refusal is immediate, not a wait: the CLI takes the lock before it loads the
model, so a user who starts a second ingest by mistake hears so in a moment rather
than after torch has loaded. The lock is re-entrant for the thread that holds it,
so the CLI can hold it around the library call that takes it again.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class CatalogBusyError(RuntimeError):
    """Another process (or thread) holds the catalog's write lock."""


_held: dict[str, tuple[int, int]] = {}  # lock file -> (owning thread id, depth)
_guard = threading.Lock()


@contextmanager
def catalog_lock(data_dir: Path, wait: bool = False) -> Iterator[None]:
    """Exclusive advisory lock; the OS drops it if the holder dies, even by SIGKILL.

    ``wait`` blocks until the other writer is done instead of raising
    :class:`CatalogBusyError`.
    """
    path = os.path.realpath(Path(data_dir) / "ingest.lock")
    me = threading.get_ident()
    with _guard:
        owner, depth = _held.get(path, (None, 0))
        if owner == me:
            _held[path] = (me, depth + 1)
            reentered = True
        elif owner is not None and not wait:
            raise _busy(data_dir)
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _guard:
                _held[path] = (me, _held[path][1] - 1)
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise _busy(data_dir) from None
        with _guard:
            _held[path] = (me, 1)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield
        finally:
            with _guard:
                del _held[path]
    finally:
        os.close(fd)


def _busy(data_dir: Path) -> CatalogBusyError:
    return CatalogBusyError(
        f"another ingest is already writing to {data_dir}; run this one when it has finished"
    )
