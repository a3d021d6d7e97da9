"""Recording what an analysis found: an analysed track, or why a file could not be.

Each is one transaction that writes the track row, its genre probabilities and its
segments, and bumps the index version when the track enters or leaves the index;
the index in memory follows right after the commit (:mod:`catalog.index_keeper`).
A failed file keeps its row (with the reason) so that it is not retried until it
changes.

A mixin of :class:`catalog.store.Catalog`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from catalog.clock import utc_now
from catalog.genre_tags import apply_genre_tags
from catalog.index_keeper import IndexKeeper
from catalog.paths import stored_path
from catalog.records import Analysis, AudioFacts, Explanation, FileFacts, Tags
from catalog.schema import Segment, Track, TrackGenre, TrackStatus


class TrackWrites(IndexKeeper):
    """Analysed and failed tracks, one transaction each (a mixin of ``Catalog``)."""

    genre_mapping: Callable[[], dict[str, str]]  # Catalog's: the owner's genres.toml

    @staticmethod
    def _upsert_track(session: Session, facts: FileFacts, track_id: int | None) -> Track:
        track = session.get(Track, track_id) if track_id else None
        if track is None:
            track = session.scalar(select(Track).where(Track.path == facts.path))
        now = utc_now()
        if track is None:
            track = Track(path=facts.path, added_at=now, status=TrackStatus.FAILED)
            session.add(track)
        track.path = facts.path
        track.size = facts.size
        track.mtime_ns = facts.mtime_ns
        track.content_hash = facts.content_hash
        track.format = facts.format
        track.updated_at = now
        return track

    def _apply_tags(self, track: Track, tags: Tags | None, audio: AudioFacts | None) -> None:
        if tags is not None:
            track.title = tags.title
            track.artist = tags.artist
            track.album = tags.album
            track.track_number = tags.track_number
            track.duration_s = tags.duration_s
            track.album_artist = getattr(tags, "album_artist", None)
            track.mbid = getattr(tags, "mbid", None)
            track.isrc = getattr(tags, "isrc", None)
            if tags.genres is not None:
                apply_genre_tags(track, tags.genres, self.genre_mapping())
        if audio is not None:
            track.duration_s = audio.duration_s
            track.sample_rate = audio.sample_rate
            track.channels = audio.channels

    def _apply_explanation(self, track: Track, explanation: Explanation | None) -> None:
        e = explanation
        # relative to the data directory, so a copied or moved one keeps its heatmaps
        track.heatmap_path = (
            stored_path(self.paths.root, e.heatmap_path) if e and e.heatmap_path else None
        )
        track.heatmap_genre = e.genre if e else None
        track.heatmap_start_s = e.start_s if e else None
        track.heatmap_end_s = e.end_s if e else None
        track.focus_low = e.focus["low"] if e else None
        track.focus_mid = e.focus["mid"] if e else None
        track.focus_high = e.focus["high"] if e else None

    def record_analysis(
        self,
        facts: FileFacts,
        tags: Tags,
        audio: AudioFacts,
        analysis: Analysis,
        track_id: int | None = None,
    ) -> int:
        """Store one analysed track in a single transaction and update the index."""
        embedding = np.ascontiguousarray(analysis.embedding, dtype=np.float32)
        self.index()  # load (or repair) before this transaction moves the version on
        with self.sessions.begin() as s:
            track = self._upsert_track(s, facts, track_id)
            self._apply_tags(track, tags, audio)
            track.status = TrackStatus.OK
            track.error = None
            track.warning = analysis.warning
            track.model_id = analysis.model_id
            track.genre = analysis.genre
            track.confidence = analysis.confidence
            track.n_segments = int(len(analysis.segment_probabilities))
            track.embedding = embedding.tobytes()
            self._apply_explanation(track, analysis.explanation)
            track.overview = analysis.overview
            track.analysed_at = utc_now()
            s.flush()
            tid = track.id
            s.execute(delete(TrackGenre).where(TrackGenre.track_id == tid))
            s.execute(delete(Segment).where(Segment.track_id == tid))
            s.execute(
                insert(TrackGenre),
                [
                    {"track_id": tid, "genre": g, "probability": float(p)}
                    for g, p in zip(analysis.genres, analysis.probabilities, strict=True)
                ],
            )
            self._insert_segments(s, tid, analysis)
            indexed = analysis.model_id == self.active_model_id
            track.embedding_version = self._bump_version(s) if indexed else None
            version = track.embedding_version
        if indexed:
            self._advance_index(
                version, lambda index: index.upsert(np.array([tid]), embedding[None, :])
            )
        return tid

    @staticmethod
    def _insert_segments(session: Session, track_id: int, analysis: Analysis) -> None:
        """The timeline rows: each segment's best genre, probabilities and embedding."""
        seg_probs = np.asarray(analysis.segment_probabilities, dtype=np.float32)
        if not len(seg_probs):
            return
        seg_embs = analysis.segment_embeddings
        best = seg_probs.argmax(axis=1)
        step = analysis.segment_seconds
        starts = analysis.segment_starts
        if starts is None:
            starts = np.arange(len(seg_probs)) * step
        session.execute(
            insert(Segment),
            [
                {
                    "track_id": track_id,
                    "idx": i,
                    "start_s": float(starts[i]),
                    "end_s": float(starts[i]) + step,
                    "genre": analysis.genres[int(best[i])],
                    "confidence": float(row[best[i]]),
                    "probabilities": row.tobytes(),
                    "embedding": None if seg_embs is None else seg_embs[i].tobytes(),
                }
                for i, row in enumerate(seg_probs)
            ],
        )

    def record_failure(
        self,
        facts: FileFacts,
        reason: str,
        tags: Tags | None = None,
        audio: AudioFacts | None = None,
        track_id: int | None = None,
    ) -> int:
        """Store why a file could not be analysed; it is not retried until it changes."""
        self.index()
        with self.sessions.begin() as s:
            track = self._upsert_track(s, facts, track_id)
            self._apply_tags(track, tags, audio)
            was_indexed = track.status == TrackStatus.OK
            track.status = TrackStatus.FAILED
            track.error = reason
            track.warning = None
            track.genre = None
            track.confidence = None
            track.n_segments = None
            track.embedding = None
            track.embedding_version = None
            self._apply_explanation(track, None)
            track.analysed_at = utc_now()
            s.flush()
            tid = track.id
            s.execute(delete(TrackGenre).where(TrackGenre.track_id == tid))
            s.execute(delete(Segment).where(Segment.track_id == tid))
            version = self._bump_version(s) if was_indexed else None
            track.embedding_version = version  # when it left the index (see sync_index)
        if version is not None:
            self._remove_from_index([tid], version)
        return tid
