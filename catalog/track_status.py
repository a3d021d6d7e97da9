"""The values of ``tracks.status``, apart from the table models.

A module of its own so that code which only compares a status (the ingest's
planning, which a Ray actor imports with the rest of the pipeline) does not import
SQLAlchemy to do it; :mod:`catalog.schema` re-exports it.
"""

from __future__ import annotations


class TrackStatus:
    """Values of ``tracks.status``."""

    OK = "ok"  # analysed; embedding stored and indexed
    FAILED = "failed"  # could not be analysed; ``error`` says why; retried when the file changes
    MISSING = "missing"  # the file is gone; row kept so a reappearing/moved file keeps its id

    ALL = (OK, FAILED, MISSING)
