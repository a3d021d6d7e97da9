"""Claims: how concurrent ingests on one PostgreSQL catalog split the files between them.

Each ingest claims a file (by path) before it hands it to a decoder, and a catalog
row (by id) before it moves the row to a new path or marks it missing. A claim is
a PostgreSQL session-level advisory lock (``pg_try_advisory_lock``) held on one
connection of the ingest until it ends: never waited for (a claimed file is simply
another ingest's work), and released by the server the moment that connection
closes, so an ingest killed by SIGKILL, or a lost machine, leaves no stale claim
and needs no clean-up table. This is the equivalent of ``SELECT ... FOR UPDATE SKIP
LOCKED`` for files that have no row yet.

A claim alone does not stop a second analysis: the other ingest may have finished
the file and let go before this one asks. So after claiming, the ingest reads the
row again (:meth:`Catalog.track_by_path`) and skips the file if its committed
outcome already matches the file on disk.

On SQLite every claim succeeds: one writer holds the catalog's lock (``ingest.lock``).
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from catalog.schema import Track
    from catalog.store import Catalog


CLAIM_CHUNK = 5_000  # keys per statement in Claims.paths


def rows_by_path(catalog: Catalog, paths: list[str]) -> dict[str, Track]:
    """The catalog's rows for these paths, read now, ``CLAIM_CHUNK`` paths a query.

    What ``Catalog.track_by_path`` reads for one file, for a whole claimed plan: after
    claiming, a file another ingest finished since the plan is left out.
    """
    from sqlalchemy import select

    from catalog.schema import Track

    found: dict[str, Track] = {}
    with catalog.sessions() as s:
        for start in range(0, len(paths), CLAIM_CHUNK):
            chunk = paths[start : start + CLAIM_CHUNK]
            for row in s.scalars(select(Track).where(Track.path.in_(chunk))):
                found[row.path] = row
            s.expunge_all()  # plain values from here on; the session holds no rows
    return found


def claim_key(kind: str, value: str | int) -> int:
    """A signed 64-bit advisory-lock key for one file path or one row id."""
    raw = os.fsencode(value) if isinstance(value, str) else str(value).encode()
    digest = hashlib.blake2b(b"sonic-claim:" + kind.encode() + b":" + raw, digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


class Claims:
    """The claims of one ingest run; use as a context manager (closing releases all)."""

    def __init__(self, catalog: Catalog) -> None:
        self.shared = catalog.is_postgres
        self._conn = None
        if self.shared:
            import psycopg

            from catalog.db import libpq_conninfo

            self._conn = psycopg.connect(libpq_conninfo(catalog.url), autocommit=True)
        self.held: set[int] = set()

    def _claim(self, key: int) -> bool:
        if not self.shared or key in self.held:
            return True
        (got,) = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if got:
            self.held.add(key)
        return bool(got)

    def path(self, path: str) -> bool:
        """Claim a file; False: another ingest is analysing it now."""
        return self._claim(claim_key("path", path))

    def paths(self, paths: list[str]) -> list[bool]:
        """Claim many files in few round trips (``CLAIM_CHUNK`` a statement).

        For a run that claims its whole plan at once (the Ray driver): one round trip
        per file would be a million of them at 1M tracks.
        """
        keys = [claim_key("path", p) for p in paths]
        if not self.shared:
            return [True] * len(keys)
        todo = sorted({k for k in keys if k not in self.held})
        for start in range(0, len(todo), CLAIM_CHUNK):
            chunk = todo[start : start + CLAIM_CHUNK]
            rows = self._conn.execute(
                "SELECT k, pg_try_advisory_lock(k) FROM unnest(%s::bigint[]) AS k", (chunk,)
            ).fetchall()
            self.held.update(k for k, got in rows if got)
        return [k in self.held for k in keys]

    def row(self, track_id: int) -> bool:
        """Claim a catalog row (a move, a restore, marking it missing)."""
        return self._claim(claim_key("row", int(track_id)))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the server drops every advisory lock of the session
            self._conn = None
        self.held.clear()

    def __enter__(self) -> Claims:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
