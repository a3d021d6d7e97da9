"""Reads with a time limit: SQL that stops itself when the caller can wait no longer.

The service answers on an event loop that must not wait on a scan: it runs a read
under :func:`time_limit`, and a read past its deadline raises
:class:`ReadTooSlow` so that it can be redone in a worker thread, where waiting is
fine. SQLite is interrupted by a progress handler every ``PROGRESS_STEPS`` virtual
machine instructions; PostgreSQL by its own ``statement_timeout`` for the time left.
Reads that finish in time are untouched. The hot reads (:mod:`catalog.browse`,
:mod:`catalog.neighbours`, :mod:`catalog.track_details`) take their connection from
:func:`reading`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from catalog.store import Catalog

_DEADLINE: ContextVar[float | None] = ContextVar("sonic_read_deadline", default=None)
PROGRESS_STEPS = 1_000  # SQLite VM instructions between deadline checks


class ReadTooSlow(Exception):
    """A read under :func:`time_limit` ran past its deadline and was stopped."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Stop the SQL of the reads below (in this context) once ``seconds`` have passed.

    For callers that must not wait on a scan (the service's event loop): the read
    raises :class:`ReadTooSlow` and can be redone where waiting is fine. Reads that
    finish in time are untouched; only reads on a :func:`reading` connection are limited.
    """
    token = _DEADLINE.set(time.perf_counter() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


# PostgreSQL: a hot read with no deadline runs in autocommit. In a transaction it
# costs three round trips to the server (BEGIN, the query, the ROLLBACK that returns
# the connection to the pool), in autocommit one; each waits for the server process
# to be scheduled, which on a loaded machine is most of a `similar` call (see
# docs/benchmarks.md, "PostgreSQL catalog"). Nothing is lost: at PostgreSQL's READ
# COMMITTED every statement takes its own snapshot inside a transaction as well.
# bench/scale_catalog.py --similar-only turns it off to time the old way beside it.
READ_AUTOCOMMIT = True


@contextmanager
def reading(catalog: Catalog) -> Iterator[Connection]:
    """A pooled connection for a read; SQLite interrupts it at the context's deadline."""
    deadline = _DEADLINE.get()
    with catalog.engine.connect() as conn:
        if deadline is None:
            if READ_AUTOCOMMIT and catalog.is_postgres:
                conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn
            return
        if catalog.is_postgres:
            with _postgres_time_limit(conn, deadline):
                yield conn
            return
        raw = conn.connection.dbapi_connection
        raw.set_progress_handler(lambda: time.perf_counter() > deadline, PROGRESS_STEPS)
        try:
            yield conn
        except OperationalError as exc:
            if "interrupted" in str(exc.orig):
                raise ReadTooSlow(f"a read ran past its time limit: {exc.statement}") from None
            raise
        finally:
            raw.set_progress_handler(None, 0)


@contextmanager
def _postgres_time_limit(conn: Connection, deadline: float) -> Iterator[None]:
    """PostgreSQL's own ``statement_timeout`` for the time left, for this transaction only."""
    left_ms = max(1, int((deadline - time.perf_counter()) * 1000))
    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {left_ms}")
    try:
        yield
    except OperationalError as exc:
        if "statement timeout" in str(exc.orig):
            raise ReadTooSlow(f"a read ran past its time limit: {exc.statement}") from None
        raise
    finally:
        if not conn.invalidated:
            conn.rollback()  # ends the SET LOCAL (and a transaction a timeout aborted)
