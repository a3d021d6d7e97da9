"""Files that moved, changed only their mtime, went missing, or came back.

The planner (``ingest/moves.py``) decides which new path is an old track moved;
these methods record its verdicts without decoding anything: the row keeps its id,
analysis and embedding, so playlists, stars and the index stay pointing at it. A
missing track leaves the index (and may come back); a returning one re-enters it.

A mixin of :class:`catalog.store.Catalog`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sqlalchemy import update
from sqlalchemy.orm import Session

from catalog.clock import utc_now
from catalog.index_keeper import IndexKeeper
from catalog.records import FileFacts
from catalog.schema import Track, TrackStatus


class TrackMoves(IndexKeeper):
    """Touched, missing and restored tracks (a mixin of ``Catalog``)."""

    def touch(self, track_id: int, facts: FileFacts) -> None:
        """Same content under a new mtime or path: keep the analysis, refresh file facts."""
        self.index()
        with self.sessions.begin() as s:
            was_missing = s.get(Track, track_id).status == TrackStatus.MISSING
            s.execute(
                update(Track)
                .where(Track.id == track_id)
                .values(
                    path=facts.path,
                    size=facts.size,
                    mtime_ns=facts.mtime_ns,
                    content_hash=facts.content_hash,
                    updated_at=utc_now(),
                )
            )
            if was_missing:
                self._restore(s, track_id)

    def _restore(self, session: Session, track_id: int) -> None:
        """A missing track is back (same content): it is analysed again if it had been."""
        track = session.get(Track, track_id)
        track.status = TrackStatus.OK if track.embedding is not None else TrackStatus.FAILED
        if track.status == TrackStatus.OK and track.error is None:
            version = self._bump_version(session)
            track.embedding_version = version
            session.flush()
            if track.model_id == self.active_model_id:
                vector = np.frombuffer(track.embedding, dtype=np.float32)
                self._advance_index(
                    version, lambda index: index.upsert(np.array([track_id]), vector[None, :])
                )

    def mark_missing(self, track_ids: Iterable[int]) -> int:
        """Files that disappeared: keep their rows (a move may bring them back), unindex."""
        ids = list(track_ids)
        if not ids:
            return 0
        self.index()
        with self.sessions.begin() as s:
            version = self._bump_version(s)
            s.execute(
                update(Track)
                .where(Track.id.in_(ids))
                .values(status=TrackStatus.MISSING, updated_at=utc_now(), embedding_version=version)
            )
        self._remove_from_index(ids, version)
        return len(ids)
