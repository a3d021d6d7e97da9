"""The short form of a track that every listing shows, and the columns it is read from.

The hot reads select these plain columns (:data:`SUMMARY_COLUMNS`, and
:data:`DETAIL_COLUMNS` for one track's details) on a pooled connection instead of
loading ORM objects: building ``Track`` instances and their embedding blobs was most
of the cost of a request. A summary is the same dict whether it comes from a row or
from a ``Track``.
"""

from __future__ import annotations

from catalog.schema import Track

SUMMARY_COLUMNS = (
    Track.id, Track.path, Track.title, Track.artist, Track.album, Track.track_number,
    Track.duration_s, Track.status, Track.genre, Track.confidence, Track.error, Track.warning,
)  # fmt: skip
# What track_details reads of the track row: everything but the embedding blob.
DETAIL_COLUMNS = (
    *SUMMARY_COLUMNS, Track.size, Track.mtime_ns, Track.content_hash, Track.format,
    Track.sample_rate, Track.channels, Track.model_id, Track.n_segments, Track.analysed_at,
    Track.added_at, Track.heatmap_path, Track.heatmap_genre, Track.heatmap_start_s,
    Track.heatmap_end_s, Track.focus_low, Track.focus_mid, Track.focus_high,
)  # fmt: skip


SUMMARY_KEYS = tuple(column.key for column in SUMMARY_COLUMNS)


def summary_of_row(row) -> dict:
    """``track_summary`` of a row that starts with ``SUMMARY_COLUMNS`` (a plain zip)."""
    return dict(zip(SUMMARY_KEYS, row, strict=False))


def track_summary(track) -> dict:
    """The short form of a track (a ``Track`` or a row of ``SUMMARY_COLUMNS``)."""
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
        "error": track.error,  # why a failed track failed: listings of failures need it
        "warning": track.warning,
    }


def track_summary_from_details(details: dict) -> dict:
    keys = ("id", "path", "title", "artist", "album", "track_number", "duration_s",
            "status", "genre", "confidence")  # fmt: skip
    return {key: details.get(key) for key in keys}
