"""One track in full: its row, genre probabilities, timeline, explanation and artefacts.

Also the two ways a face names a track (:func:`resolve_track`: an id or a path) and
the waveform overview blob, read apart since only a face that draws it wants it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import bindparam, select

from catalog.errors import TrackNotFound
from catalog.explanations import band_focus_of
from catalog.genre_views import genre_views
from catalog.read_deadline import reading
from catalog.schema import Segment, StemSet, StemStatus, Track, TrackGenre
from catalog.stems import latest_stems
from catalog.store import Catalog
from catalog.track_summaries import DETAIL_COLUMNS, summary_of_row
from embeddings.bands import band_focus_sentence


def resolve_track(catalog: Catalog, ref: str | int) -> int:
    """A track id from an id or a file path (relative paths are resolved)."""
    with catalog.sessions() as s:
        text = str(ref)
        if text.isdigit() and s.get(Track, int(text)) is not None:
            return int(text)
        path = str(Path(text).expanduser().absolute())
        track_id = s.scalar(select(Track.id).where(Track.path.in_({text, path})))
        if track_id is None:
            raise TrackNotFound(f"no track with id or path {text!r} in the catalog")
        return int(track_id)


_DETAILS = select(*DETAIL_COLUMNS).where(Track.id == bindparam("track_id"))
_PROBABILITIES = (
    select(TrackGenre.genre, TrackGenre.probability)
    .where(TrackGenre.track_id == bindparam("track_id"))
    .order_by(TrackGenre.probability.desc())  # the order of the Track.genres relationship
)
_TIMELINE = (
    select(
        Segment.idx,
        Segment.start_s,
        Segment.end_s,
        Segment.genre,
        Segment.confidence,
        Segment.probabilities,
    )  # fmt: skip
    .where(Segment.track_id == bindparam("track_id"))
    .order_by(Segment.idx)
)
_ANY_STEMS = (
    select(StemSet.id)
    .where(StemSet.content_hash == bindparam("content_hash"), StemSet.status == StemStatus.OK)
    .limit(1)
)


def track_details(catalog: Catalog, track_id: int) -> dict:
    """Everything the catalog holds for one track."""
    with reading(catalog) as conn:
        track = conn.execute(_DETAILS, {"track_id": track_id}).first()
        if track is None:
            raise TrackNotFound(f"no track with id {track_id}")
        probabilities = conn.execute(_PROBABILITIES, {"track_id": track_id}).all()
        segments = conn.execute(_TIMELINE, {"track_id": track_id}).all()
        # Stems are rare: one indexed probe, and the full read only when a set exists.
        has_stems = track.content_hash and conn.scalar(
            _ANY_STEMS, {"content_hash": track.content_hash}
        )
    genres = catalog.model_genres(track.model_id)
    found = catalog.artefact_path(track.heatmap_path)  # in the data directory as it is now
    heatmap = str(found) if found is not None else None
    timeline = [
        {
            "index": idx,
            "start_s": start_s,
            "end_s": end_s,
            "genre": genre,
            "confidence": confidence,
            # tolist(): the same Python floats as float() of each float32, in one call
            "probabilities": dict(
                zip(genres, np.frombuffer(probs, dtype=np.float32).tolist(), strict=False)
            ),
        }
        for idx, start_s, end_s, genre, confidence, probs in segments
    ]
    return {
        **summary_of_row(track),
        "size": track.size,
        "mtime_ns": track.mtime_ns,
        "content_hash": track.content_hash,
        "format": track.format,
        "sample_rate": track.sample_rate,
        "channels": track.channels,
        "error": track.error,
        "warning": track.warning,
        "model_id": track.model_id,
        "n_segments": track.n_segments,
        "analysed_at": track.analysed_at.isoformat() if track.analysed_at else None,
        "added_at": track.added_at.isoformat() if track.added_at else None,
        "in_index": catalog.index().vector(track.id) is not None,
        "probabilities": dict(probabilities),
        "timeline": timeline,
        "explanation": _explanation(track, heatmap),
        "genre_views": genre_views(catalog, [track.id]).get(track.id),
        "artefacts": {
            "audio": track.path,
            "heatmap": heatmap,
            "stems": latest_stems(catalog, track.content_hash) if has_stems else {},
        },
    }


def waveform_overview(catalog: Catalog, track_id: int) -> np.ndarray | None:
    """The (2, n) min/max waveform overview stored at ingest, or None (older rows).

    A separate read: the blob is only wanted by a face that draws it.
    """
    with catalog.sessions() as s:
        blob = s.scalar(select(Track.overview).where(Track.id == track_id))
    if not blob:
        return None
    return np.frombuffer(blob, dtype=np.float16).astype(np.float32).reshape(2, -1)


def _explanation(track, heatmap: str | None) -> dict | None:
    """The stored explanation of a ``Track`` or a row of ``DETAIL_COLUMNS``.

    ``heatmap``: its PNG resolved against the current data directory.
    """
    focus = band_focus_of(track)
    if focus is None:
        return None
    return {
        "genre": track.heatmap_genre,
        "heatmap": heatmap,
        "window_s": [track.heatmap_start_s, track.heatmap_end_s],
        "band_focus": focus,
        "sentence": band_focus_sentence(focus),
    }
