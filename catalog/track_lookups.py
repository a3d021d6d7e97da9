"""What the scanner reads of the tracks to plan a run: rows by path, by hash, and file states.

A mixin of :class:`catalog.store.Catalog`. :class:`FileState` is what the planner
(``ingest/scan.py``, ``ingest/moves.py``) compares with the disk: the columns that
say whether a file changed, without the embedding blobs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from catalog.schema import Track


class FileState(NamedTuple):
    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    status: str
    model_id: str | None
    analysed: bool  # an embedding is stored


class TrackLookups:
    """Reads of track rows by path, id and content (a mixin of ``Catalog``)."""

    sessions: sessionmaker[Session]

    def track_by_path(self, path: str) -> Track | None:
        with self.sessions() as s:
            return s.scalar(select(Track).where(Track.path == path))

    def paths_of(self, track_ids: Iterable[int]) -> dict[int, str]:
        """The current path of each of these rows (read now, not from any plan)."""
        ids = list(track_ids)
        if not ids:
            return {}
        with self.sessions() as s:
            return dict(s.execute(select(Track.id, Track.path).where(Track.id.in_(ids))).all())

    def tracks_by_hash(self, content_hash: str) -> list[Track]:
        with self.sessions() as s:
            return list(s.scalars(select(Track).where(Track.content_hash == content_hash)))

    def file_states(self) -> list[FileState]:
        """The columns the scanner compares with the disk, for every track (no blobs)."""
        columns = (
            Track.id, Track.path, Track.size, Track.mtime_ns,
            Track.content_hash, Track.status, Track.model_id,
            Track.embedding.is_not(None),
        )  # fmt: skip
        with self.sessions() as s:
            return [FileState(*row[:-1], bool(row[-1])) for row in s.execute(select(*columns))]
