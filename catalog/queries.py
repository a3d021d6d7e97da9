"""Read-side questions the CLI, the API and the UI ask of a catalog.

Every function returns plain dicts and lists (JSON-ready), so the faces above can
print or serve them without knowing SQLAlchemy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload

from catalog.errors import TrackNotFound
from catalog.explanations import band_focus_of, band_focus_sentence
from catalog.schema import Track, TrackStatus
from catalog.stems import latest_stems
from catalog.store import Catalog


def track_summary(track: Track) -> dict:
    return {
        "id": track.id,
        "path": track.path,
        "title": track.title,
        "artist": track.artist,
        "album": track.album,
        "track_number": track.track_number,
        "duration_s": track.duration_s,
        "status": track.status,
        "genre": track.genre,
        "confidence": track.confidence,
    }


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


def genre_counts(catalog: Catalog) -> list[dict]:
    """Tracks per predicted genre, most common first (analysed, present tracks only)."""
    with catalog.sessions() as s:
        rows = s.execute(
            select(Track.genre, func.count(), func.avg(Track.confidence))
            .where(Track.status == TrackStatus.OK, Track.model_id == catalog.active_model_id)
            .group_by(Track.genre)
            .order_by(func.count().desc(), Track.genre)
        ).all()
    return [{"genre": g, "tracks": int(n), "mean_confidence": float(c or 0)} for g, n, c in rows]


def browse(
    catalog: Catalog,
    genre: str | None = None,
    status: str | None = None,
    artist: str | None = None,
    album: str | None = None,
    text: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict:
    """A page of tracks matching the filters, most confident first within a genre."""
    query = select(Track)
    if genre:
        query = query.where(Track.genre == genre)
    if status:
        query = query.where(Track.status == status)
    if artist:
        query = query.where(Track.artist == artist)
    if album:
        query = query.where(Track.album == album)
    if text:
        like = f"%{text}%"
        query = query.where(
            or_(Track.title.ilike(like), Track.artist.ilike(like), Track.album.ilike(like))
        )
    order = (Track.confidence.desc(), Track.id) if genre else (Track.path,)
    with catalog.sessions() as s:
        total = s.scalar(select(func.count()).select_from(query.subquery()))
        rows = s.scalars(query.order_by(*order).limit(limit).offset(offset)).all()
    return {
        "total": int(total or 0),
        "limit": limit,
        "offset": offset,
        "tracks": [track_summary(t) for t in rows],
    }


def similar(catalog: Catalog, track_id: int, k: int = 10) -> list[dict]:
    """The k nearest tracks by cosine similarity, excluding the query, best first."""
    index = catalog.index()
    vector = index.vector(track_id)
    if vector is None:
        with catalog.sessions() as s:
            track = s.get(Track, track_id)
        if track is None:
            raise TrackNotFound(f"no track with id {track_id}")
        raise LookupError(
            f"track {track_id} has no embedding in the index (status: {track.status}"
            + (f", {track.error}" if track.error else "")
            + ")"
        )
    return similar_to_vector(catalog, vector, k, exclude={track_id})


def similar_to_vector(
    catalog: Catalog, vector: np.ndarray, k: int = 10, exclude: set[int] | None = None
) -> list[dict]:
    """Nearest catalogued tracks to an arbitrary embedding (e.g. an uploaded clip)."""
    exclude = exclude or set()
    hits = [
        (i, sc) for i, sc in catalog.index().search(vector, k + len(exclude)) if i not in exclude
    ]
    hits = hits[:k]
    with catalog.sessions() as s:
        tracks = {
            t.id: t for t in s.scalars(select(Track).where(Track.id.in_([i for i, _ in hits])))
        }
    return [{**track_summary(tracks[i]), "score": score} for i, score in hits if i in tracks]


def track_details(catalog: Catalog, track_id: int) -> dict:
    """Everything the catalog holds for one track."""
    with catalog.sessions() as s:
        track = s.scalar(
            select(Track)
            .where(Track.id == track_id)
            .options(selectinload(Track.genres), selectinload(Track.segments))
        )
        if track is None:
            raise TrackNotFound(f"no track with id {track_id}")
        genres = catalog.model_genres(track.model_id)
        timeline = []
        for seg in track.segments:
            probs = np.frombuffer(seg.probabilities, dtype=np.float32)
            timeline.append(
                {
                    "index": seg.idx,
                    "start_s": seg.start_s,
                    "end_s": seg.end_s,
                    "genre": seg.genre,
                    "confidence": seg.confidence,
                    "probabilities": dict(zip(genres, map(float, probs), strict=False)),
                }
            )
        return {
            **track_summary(track),
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
            "probabilities": {g.genre: g.probability for g in track.genres},
            "timeline": timeline,
            "explanation": _explanation(track),
            "artefacts": {
                "audio": track.path,
                "heatmap": track.heatmap_path,
                "stems": latest_stems(catalog, track.content_hash),
            },
        }


def _explanation(track: Track) -> dict | None:
    focus = band_focus_of(track)
    if focus is None:
        return None
    return {
        "genre": track.heatmap_genre,
        "heatmap": track.heatmap_path,
        "window_s": [track.heatmap_start_s, track.heatmap_end_s],
        "band_focus": focus,
        "sentence": band_focus_sentence(focus),
    }


def stats(catalog: Catalog) -> dict:
    """Counts by status, audio hours, the active model and the index's health."""
    with catalog.sessions() as s:
        by_status = dict(s.execute(select(Track.status, func.count()).group_by(Track.status)).all())
        hours = s.scalar(select(func.sum(Track.duration_s)).where(Track.status == TrackStatus.OK))
        failures = s.execute(
            select(Track.error, func.count())
            .where(Track.status == TrackStatus.FAILED)
            .group_by(Track.error)
            .order_by(func.count().desc())
            .limit(10)
        ).all()
    return {
        "data_dir": str(catalog.paths.root),
        "database": str(catalog.paths.database),
        "tracks": {status: int(by_status.get(status, 0)) for status in TrackStatus.ALL},
        "audio_hours": float(hours or 0) / 3600,
        "active_model_id": catalog.active_model_id,
        "top_failure_reasons": [{"reason": r, "tracks": int(n)} for r, n in failures],
        "index": catalog.index_health(),
    }
