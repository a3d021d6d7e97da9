"""Find a catalog track from what another library knows of a song.

Media servers that keep their own library (Navidrome's ``sonic_similarity``
plugin capability) describe a song by their own id, MusicBrainz recording id,
ISRC, artist, title, album and duration. This finds the catalog's track and says
how sure the match is:

- ``id`` (the catalog's track id, or ``tr-<id>``): 1.0;
- ``mbid`` equal: 1.0; ``isrc`` equal (upper case, no hyphens, as stored at
  ingest): 0.95 (an ISRC can cover re-releases; the duration picks among several);
- otherwise title (case-insensitive, required) plus what else agrees: artist
  0.35, album 0.15, duration within 2 s 0.1 (fading to nothing at 10 s), from a
  base of 0.4 for the title alone. The best candidate wins; ties go to the lower id.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from catalog.schema import Track, TrackStatus
from catalog.store import Catalog

COLUMNS = (Track.id, Track.mbid, Track.isrc, Track.artist, Track.title, Track.album,
           Track.duration_s)  # fmt: skip


@dataclass
class SongFields:
    id: str | None = None
    mbid: str | None = None
    isrc: str | None = None
    artist: str | None = None
    title: str | None = None
    album: str | None = None
    duration: float | None = None


def fields_of(row) -> dict:
    """A track row as the fields a media server matches on."""
    return {"id": f"tr-{row.id}", "track_id": row.id, "mbid": row.mbid, "isrc": row.isrc,
            "artist": row.artist, "title": row.title, "album": row.album,
            "duration": row.duration_s}  # fmt: skip


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and a.strip().casefold() == b.strip().casefold()


def _duration_score(want: float | None, have: float | None) -> float:
    if want is None or have is None:
        return 0.0
    gap = abs(want - have)
    return 0.1 if gap <= 2 else max(0.0, 0.1 * (10 - gap) / 8)


def find_song(catalog: Catalog, song: SongFields) -> tuple[dict, float, str] | None:
    """(the track's fields, confidence in [0, 1], what matched) or None."""
    ok = Track.status == TrackStatus.OK
    with catalog.engine.connect() as conn:
        ref = (song.id or "").removeprefix("tr-")
        if ref.isdigit() and len(ref) < 19:
            row = conn.execute(select(*COLUMNS).where(Track.id == int(ref), ok)).first()
            if row is not None:
                return fields_of(row), 1.0, "id"
        if song.mbid:
            row = conn.execute(select(*COLUMNS).where(Track.mbid == song.mbid.strip(), ok)).first()
            if row is not None:
                return fields_of(row), 1.0, "mbid"
        if song.isrc:
            rows = conn.execute(
                select(*COLUMNS).where(Track.isrc == song.isrc.strip().upper().replace("-", ""), ok)
            ).all()
            if rows:
                best = min(rows, key=lambda r: (abs((r.duration_s or 0) - (song.duration or 0))
                                                if song.duration else 0, r.id))  # fmt: skip
                return fields_of(best), 0.95, "isrc"
        if not song.title:
            return None
        rows = conn.execute(
            select(*COLUMNS).where(func.lower(Track.title) == song.title.strip().lower(), ok)
        ).all()
    scored = []
    for row in rows:
        score = 0.4
        score += 0.35 if _same(song.artist, row.artist) else 0.0
        score += 0.15 if _same(song.album, row.album) else 0.0
        score += _duration_score(song.duration, row.duration_s)
        scored.append((round(score, 3), -row.id, row))
    if not scored:
        return None
    score, _, row = max(scored, key=lambda s: (s[0], s[1]))
    return fields_of(row), score, "tags"


def rows_by_id(catalog: Catalog, ids: list[int]) -> dict[int, dict]:
    with catalog.engine.connect() as conn:
        rows = conn.execute(select(*COLUMNS).where(Track.id.in_(ids))).all()
    return {r.id: fields_of(r) for r in rows}
