"""Engine, sessions and automatic migration of the SQLite catalog."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from migrations import MIGRATIONS_DIR


def _alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url)
    return config


def _set_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers (the web service) never block the ingest writer, and a killed
    # process leaves the database at its last committed transaction.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def open_reader(database: Path) -> sqlite3.Connection:
    """A plain read-only connection, outside the engine's pool, for hot small reads.

    The catalog keeps one for its meta cache: it must never write (``query_only``), so
    that ``PRAGMA data_version`` on it changes exactly when another connection commits.
    Autocommit (``isolation_level=None``): each statement reads the newest commit.
    """
    conn = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA query_only=ON")
    return conn


def create_catalog_engine(database: Path) -> Engine:
    """An engine on ``database`` with the catalog's connection settings."""
    database.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{database}", connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _set_pragmas)
    return engine


def head_revision() -> str:
    script = ScriptDirectory.from_config(_alembic_config("sqlite://"))
    return script.get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def _migration_lock(database: Path) -> Iterator[None]:
    """Serialise migrations across processes: one upgrades, the others wait, then see head.

    Without it two processes opening a new catalog at once both find no schema and both
    create it, and one dies with "table tracks already exists". The OS drops the lock
    if its holder dies.
    """
    fd = os.open(database.with_name(database.name + ".migrate.lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def migrate(engine: Engine, database: Path | None = None) -> None:
    """Bring the schema to the newest migration (``alembic upgrade head``).

    With ``database`` (the SQLite file) the upgrade runs under a cross-process lock,
    and the revision is checked again once the lock is held.
    """
    head = head_revision()
    if current_revision(engine) == head:
        return
    if database is None:
        _upgrade(engine)
        return
    with _migration_lock(database):
        if current_revision(engine) != head:
            _upgrade(engine, database.absolute().parent)


def _upgrade(engine: Engine, data_dir: Path | None = None) -> None:
    config = _alembic_config(str(engine.url))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        # Migrations that rewrite artefact paths (0006) need the data directory.
        config.attributes["data_dir"] = data_dir
        command.upgrade(config, "head")


def open_database(database: Path) -> tuple[Engine, sessionmaker[Session]]:
    """Engine and session factory on a migrated catalog database."""
    engine = create_catalog_engine(database)
    migrate(engine, database)
    return engine, sessionmaker(engine, expire_on_commit=False)
