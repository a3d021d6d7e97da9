"""The catalog's ``catalog_meta`` rows: a handful of keys read on every request.

The index version, the active model and its genres, the embedding width, the
library roots and the remembered checkpoints are each one row. Reads come from a
snapshot of the whole table that is never stale (see :meth:`MetaStore.meta`);
writes happen inside a write transaction, after an advisory lock on PostgreSQL, so
that the index version follows commit order even with several writers.

A mixin of :class:`catalog.store.Catalog`, which opens the database and the paths
these methods use.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from catalog.db import libpq_conninfo, open_reader
from catalog.paths import CatalogPaths
from catalog.schema import CatalogMeta

INDEX_VERSION = "index_version"
META_LOCK_KEY = 0x534F4E49434D4554  # "SONICMET": pg_advisory_xact_lock key of meta writes
ACTIVE_MODEL = "active_model_id"
EMBEDDING_DIM = "embedding_dim"
LIBRARY_ROOTS = "library_roots"


def model_genres_key(model_id: str) -> str:
    """The meta key of one model's genre names, in its head's order."""
    return f"genres:{model_id}"


class MetaStore:
    """Cached reads and locked writes of ``catalog_meta`` (a mixin of ``Catalog``)."""

    paths: CatalogPaths
    url: URL | None
    sessions: sessionmaker[Session]
    is_postgres: bool
    _index: Any

    def _open_meta_cache(self) -> None:
        """The meta cache: every catalog_meta row, as of ``PRAGMA data_version`` below."""
        self._meta_lock = threading.Lock()
        self._meta_reader: sqlite3.Connection | Any | None = None
        self._meta_reader_pid: int | None = None
        self._meta_version: int | None = None
        self._meta_values: dict[str, str] = {}

    def _close_meta_cache(self) -> None:
        with self._meta_lock:
            if self._meta_reader is not None and self._meta_reader_pid == os.getpid():
                self._meta_reader.close()
            self._meta_reader, self._meta_version = None, None

    def meta(self, key: str, default: str | None = None) -> str | None:
        """The committed value of one catalog_meta key (cached; never stale, see below)."""
        return self._meta_snapshot().get(key, default)

    def _meta_snapshot(self) -> dict[str, str]:
        """Every catalog_meta row, read again only when the database changed since.

        The service asks for the active model (and the index version, the genre names)
        on every request; a session per ask cost more than the rest of a catalog read.
        ``PRAGMA data_version`` on a connection that never writes changes whenever any
        other connection, in this process or another (an ingest), commits: a few
        microseconds to learn that the cached rows are still the committed ones. The
        table is a handful of rows, so any commit simply re-reads all of it.
        """
        if self.is_postgres:
            return self._meta_snapshot_postgres()
        with self._meta_lock:
            if self._meta_reader is None or self._meta_reader_pid != os.getpid():
                # a forked child must not share its parent's SQLite connection
                self._meta_reader = open_reader(self.paths.database)
                self._meta_reader_pid, self._meta_version = os.getpid(), None
            reader = self._meta_reader
            version = reader.execute("PRAGMA data_version").fetchone()[0]
            if version != self._meta_version:
                # read after the version: a commit in between is seen now and again later
                rows = reader.execute("SELECT key, value FROM catalog_meta").fetchall()
                self._meta_values = dict(rows)
                self._meta_version = version
            return self._meta_values

    def _meta_snapshot_postgres(self) -> dict[str, str]:
        """Every catalog_meta row, read on each call from a reader of this process's own.

        PostgreSQL has no ``data_version`` to say "nothing changed"; the table is a
        handful of rows and one autocommit round trip on a kept connection costs
        well under a millisecond, so it is simply read again: never stale.
        """
        import psycopg

        with self._meta_lock:
            for attempt in (0, 1):
                if self._meta_reader is None or self._meta_reader_pid != os.getpid():
                    self._meta_reader = psycopg.connect(libpq_conninfo(self.url), autocommit=True)
                    self._meta_reader_pid = os.getpid()
                try:
                    rows = self._meta_reader.execute(
                        "SELECT key, value FROM catalog_meta"
                    ).fetchall()
                    break
                except psycopg.OperationalError:  # the server restarted: reconnect once
                    self._meta_reader = None
                    if attempt:
                        raise
            self._meta_values = dict(rows)
            return self._meta_values

    def _lock_meta(self, session: Session) -> None:
        """PostgreSQL: serialise this transaction's meta writes with every other writer's.

        A transaction-scoped advisory lock, taken before the rows are read: two
        ingests bumping the index version at once would otherwise both read N and
        both write N + 1, and a reader would miss one of the two commits. Held to the
        commit, it makes versions follow commit order. SQLite has one writer anyway.
        """
        if self.is_postgres:
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": META_LOCK_KEY})

    def _set_meta(self, session: Session, key: str, value: str) -> None:
        self._lock_meta(session)
        dialect_insert = pg_insert if self.is_postgres else sqlite_insert
        statement = dialect_insert(CatalogMeta).values(key=key, value=value)
        session.execute(
            statement.on_conflict_do_update(index_elements=["key"], set_={"value": value})
        )

    def _get_meta(self, session: Session, key: str) -> str | None:
        """A meta value inside a write transaction (after the lock, never from a cache)."""
        self._lock_meta(session)
        return session.scalar(select(CatalogMeta.value).where(CatalogMeta.key == key))

    def _bump_version(self, session: Session) -> int:
        current = self._get_meta(session, INDEX_VERSION)
        version = int(current) + 1 if current else 1
        self._set_meta(session, INDEX_VERSION, str(version))
        return version

    def index_version(self) -> int:
        return int(self.meta(INDEX_VERSION, "0"))

    # -- the active model -------------------------------------------------------------

    @property
    def active_model_id(self) -> str | None:
        return self.meta(ACTIVE_MODEL)

    def model_genres(self, model_id: str | None) -> list[str]:
        raw = self.meta(model_genres_key(model_id)) if model_id else None
        return json.loads(raw) if raw else []

    def activate_model(self, model_id: str, genres: list[str], embedding_dim: int) -> bool:
        """Make ``model_id`` the model whose embeddings the index holds.

        Returns True when this changed the active model: the index then holds only
        tracks already analysed by the new model until the others are re-analysed.
        """
        with self.sessions.begin() as s:
            self._set_meta(s, model_genres_key(model_id), json.dumps(list(genres)))
            if self._get_meta(s, ACTIVE_MODEL) == model_id:
                return False
            self._set_meta(s, ACTIVE_MODEL, model_id)
            self._set_meta(s, EMBEDDING_DIM, str(embedding_dim))
            self._bump_version(s)
        self._index = None
        return True

    # -- library roots ----------------------------------------------------------------

    def library_roots(self) -> list[Path]:
        """The folders ingests were run on: the only places the service serves audio from."""
        raw = self.meta(LIBRARY_ROOTS)
        return [Path(p) for p in json.loads(raw)] if raw else []

    def add_library_roots(self, roots: Iterable[Path]) -> None:
        """Remember the folders (or files) an ingest was pointed at."""
        new = [str(Path(r).expanduser().absolute()) for r in roots]
        with self.sessions.begin() as s:
            raw = self._get_meta(s, LIBRARY_ROOTS)
            known = json.loads(raw) if raw else []
            merged = list(dict.fromkeys(known + new))
            if merged != known:
                self._set_meta(s, LIBRARY_ROOTS, json.dumps(merged))
