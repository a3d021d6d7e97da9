"""A track's genre tag in the catalog: the raw values kept, the normalised ones beside them."""

from __future__ import annotations

import json
from collections.abc import Mapping

from sqlalchemy import select, update

from catalog.genre_names import normalise_genres
from catalog.schema import Track


def apply_genre_tags(track: Track, raw: list[str], mapping: Mapping[str, str]) -> None:
    """Set a ``Track``'s raw genre values and their normalised genres."""
    genres = normalise_genres(raw, mapping)
    track.genre_tag_raw = json.dumps(list(raw), ensure_ascii=False)
    track.genre_tags = json.dumps(genres, ensure_ascii=False)
    track.genre_tag = genres[0] if genres else None


def renormalise(catalog) -> int:
    """Normalise every stored raw genre tag again (the mapping file may have changed).

    Returns how many tracks' normalised genres changed. Only text is touched.
    """
    mapping = catalog.genre_mapping()
    changed = 0
    with catalog.sessions.begin() as s:
        rows = s.execute(
            select(Track.id, Track.genre_tag_raw, Track.genre_tags).where(
                Track.genre_tag_raw.is_not(None)
            )
        ).all()
        for track_id, raw, old in rows:
            genres = normalise_genres(json.loads(raw), mapping)
            new = json.dumps(genres, ensure_ascii=False)
            if new != old:
                changed += 1
                s.execute(
                    update(Track)
                    .where(Track.id == track_id)
                    .values(genre_tags=new, genre_tag=genres[0] if genres else None)
                )
    return changed


def set_raw_genre_tags(catalog, values: dict[int, list[str]]) -> None:
    """Store genre fields read from the files (tracks indexed before tags were kept)."""
    mapping = catalog.genre_mapping()
    with catalog.sessions.begin() as s:
        for track_id, raw in values.items():
            track = s.get(Track, track_id)
            if track is not None:
                apply_genre_tags(track, raw, mapping)
