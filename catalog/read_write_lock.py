"""Many readers at once, or one writer alone: the lock around a FAISS index.

A change to a FAISS index while another thread searches it is undefined (its
storage may move), so :class:`catalog.index.VectorIndex` takes this lock around
every search and change.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ReadWriteLock:
    """Many searches at once, or one change alone (writers first, so changes never starve).

    A change to a FAISS index while another thread searches it is undefined (its
    storage may move). The service's index is changed in place when it catches up
    with a shared catalog (``Catalog.sync_index``), in a worker thread, while request
    threads search: so searches and reads share, and changes wait for them.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()
