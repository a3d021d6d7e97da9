"""Content hashes: how the catalog recognises a file that was moved or renamed.

The hash is read through a descriptor checked to be a regular file: a fifo or a
device swapped in for an audio file must neither block the open nor be read
forever, wherever the hash is taken (ingest's workers, the stems cache).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

CHUNK = 1 << 20

_NOT_REGULAR = (
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISDIR, "folder"),
)


class NotRegularFile(OSError):
    """The path is not (or stopped being) a regular file."""


def file_kind(mode: int) -> str:
    """A person's name for what ``mode`` says is not a regular file (``fifo``, ...)."""
    return next((name for test, name in _NOT_REGULAR if test(mode)), "special file")


def content_hash(path: Path, progress: Callable[[], None] | None = None) -> str:
    """BLAKE2b-256 of the whole file, hex (64 characters).

    Opened with O_NONBLOCK, so that a fifo cannot block the open; the fstat of the
    open descriptor then decides (:class:`NotRegularFile` for anything else).
    ``progress()`` is called after each megabyte: hashing a large file on a slow disk
    takes a while, and a watchdog must not mistake it for a hang.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb") as fh:  # closes fd, whatever happens
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(errno.EINVAL, f"not a regular file: {file_kind(mode)}")
        os.set_blocking(fd, True)
        digest = hashlib.blake2b(digest_size=32)
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress()
    return digest.hexdigest()
