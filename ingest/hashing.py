"""Content hashes: how the catalog recognises a file that was moved or renamed."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def content_hash(path: Path) -> str:
    """BLAKE2b-256 of the whole file, hex (64 characters)."""
    digest = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
