"""One writer per catalog: a second ``sonic ingest`` on the same data directory is refused.

That is SQLite's rule. A PostgreSQL catalog takes concurrent ingests, each claiming
the files it analyses (``Catalog.claim``), so :func:`ingest_lock` takes no lock there.

The refusal is immediate, not a wait: the CLI takes the lock before it loads the
model, so a user who starts a second ingest by mistake hears so in a moment rather
than after torch has loaded, and hands the held lock to the pipeline, which would
otherwise take it itself.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from catalog.store import Catalog


class CatalogBusyError(RuntimeError):
    """Another writer holds the catalog's write lock."""


@dataclass(frozen=True)
class HeldLock:
    """Proof that the caller holds the write lock of one data directory."""

    path: str

    def covers(self, data_dir: Path) -> bool:
        return self.path == _lock_path(data_dir)


def _lock_path(data_dir: Path) -> str:
    return os.path.realpath(Path(data_dir) / "ingest.lock")


@contextmanager
def catalog_lock(data_dir: Path, wait: bool = False) -> Iterator[HeldLock]:
    """Exclusive advisory lock; the OS drops it if the holder dies, even by SIGKILL.

    ``wait`` blocks until the other writer is done instead of raising
    :class:`CatalogBusyError`. Any other open of the lock, in this process too, is
    another writer.
    """
    path = _lock_path(data_dir)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise CatalogBusyError(
                f"another ingest is already writing to {data_dir}; "
                "run this one when it has finished"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield HeldLock(path)
    finally:
        os.close(fd)


@contextmanager
def ingest_lock(catalog: Catalog, wait: bool = False) -> Iterator[HeldLock]:
    """The lock an ingest on ``catalog`` takes: :func:`catalog_lock` on SQLite.

    On PostgreSQL none: several ingests may write at once and split the work by
    claiming files, so the proof of holding is given without excluding anyone.
    """
    if getattr(catalog, "is_postgres", False):
        yield HeldLock(_lock_path(catalog.paths.root))
        return
    with catalog_lock(catalog.paths.root, wait) as held:
        yield held
