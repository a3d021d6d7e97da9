"""Engine, sessions and automatic migration of the catalog database.

SQLite (a file in the data directory) is the embedded default. A database URL
(``--database-url`` / ``$SONIC_DATABASE_URL``, ``postgresql+psycopg://...``) selects
PostgreSQL instead: the same models and the same Alembic migrations, for a catalog
shared by several ingests and servers.
"""

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
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from migrations import MIGRATIONS_DIR

DATABASE_URL_ENV = "SONIC_DATABASE_URL"
# pg_advisory_xact_lock key serialising migrations on PostgreSQL (any fixed 64-bit value)
MIGRATION_LOCK_KEY = 0x50_4E_49_43_4D_49_47  # "SONICMIG"-ish


class DatabaseUrlError(ValueError):
    """A database URL the catalog cannot use, with what to do about it."""


def parse_database_url(url: str) -> URL:
    """The SQLAlchemy URL for ``url``: PostgreSQL through psycopg 3, or SQLite.

    ``postgresql://`` (libpq's spelling) is taken to mean psycopg 3; any other
    PostgreSQL driver, or another database, is refused with a clear message.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseUrlError(f"not a database URL: {url!r} ({exc})") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername == "postgresql+psycopg":
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise DatabaseUrlError(
                "a PostgreSQL catalog needs psycopg: pip install 'sonic-catalog[scale]'"
            ) from None
        if not parsed.database:
            raise DatabaseUrlError(f"the URL names no database: {parsed!r}")
        return parsed
    if parsed.drivername == "sqlite":
        return parsed
    raise DatabaseUrlError(
        f"unsupported database {parsed.drivername!r}: use postgresql+psycopg://USER@HOST/DB "
        "(or leave the URL unset for the SQLite file in the data directory)"
    )


def is_postgres(engine_or_url: Engine | URL) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else engine_or_url
    return url.get_backend_name() == "postgresql"


def libpq_conninfo(url: URL) -> str:
    """The URL as psycopg/libpq spell it (no SQLAlchemy driver suffix)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


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


def create_catalog_engine(database: Path, url: URL | None = None) -> Engine:
    """An engine on ``url`` (PostgreSQL), else on the SQLite file ``database``."""
    if url is not None and is_postgres(url):
        # No pre-ping: it is a round trip per checkout, and a hot read is two already.
        # A connection the server dropped is invalidated by the error and replaced.
        return create_engine(url, pool_size=5, max_overflow=10, pool_recycle=3600)
    if url is not None:
        database = Path(url.database or database)
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
    if is_postgres(engine):
        _upgrade(engine, lock=True)
        return
    if database is None:
        _upgrade(engine)
        return
    with _migration_lock(database):
        if current_revision(engine) != head:
            _upgrade(engine, database.absolute().parent)


def _upgrade(engine: Engine, data_dir: Path | None = None, lock: bool = False) -> None:
    """``alembic upgrade head`` in one transaction.

    ``data_dir``: the catalog's data directory, for migrations that rewrite artefact
    paths (0006). ``lock`` (PostgreSQL): first take a transaction-scoped advisory lock,
    so that of several processes opening a new catalog at once one migrates and the
    others wait, then find head (PostgreSQL's DDL is transactional; the lock ends with
    the commit).
    """
    config = _alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        if lock:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        config.attributes["connection"] = conn
        # Migrations that rewrite artefact paths (0006) need the data directory.
        config.attributes["data_dir"] = data_dir
        command.upgrade(config, "head")


def open_database(database: Path, url: URL | None = None) -> tuple[Engine, sessionmaker[Session]]:
    """Engine and session factory on a migrated catalog database.

    ``url`` (see :func:`parse_database_url`) selects PostgreSQL; without it the
    catalog is the SQLite file ``database``.
    """
    engine = create_catalog_engine(database, url)
    migrate(engine, None if is_postgres(engine) else database)
    return engine, sessionmaker(engine, expire_on_commit=False)
