"""Sound-alike search: the nearest catalogued tracks to a track or to any embedding.

The index answers with ids and cosines; the rows are then read as plain summary
columns in one query. Filters (a genre, leaving the query's album out) are applied
after the search, so a filtered search asks the index for more candidates until
enough pass.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import bindparam, select

from catalog.errors import TrackNotFound
from catalog.read_deadline import reading
from catalog.schema import Track
from catalog.store import Catalog
from catalog.track_summaries import SUMMARY_COLUMNS, summary_of_row

_SEED = select(Track.status, Track.error, Track.album).where(Track.id == bindparam("track_id"))
_SUMMARIES = select(*SUMMARY_COLUMNS).where(Track.id.in_(bindparam("ids", expanding=True)))


def similar(
    catalog: Catalog,
    track_id: int,
    k: int = 10,
    genre: str | None = None,
    exclude_same_album: bool = False,
) -> list[dict]:
    """The k nearest tracks by cosine similarity, excluding the query, best first.

    ``genre`` keeps only neighbours predicted as that genre; ``exclude_same_album``
    drops neighbours from the query track's album (when it has one).
    """
    index = catalog.index()
    vector = index.vector(track_id)
    album = None
    if vector is None or exclude_same_album:
        with reading(catalog) as conn:
            track = conn.execute(_SEED, {"track_id": track_id}).first()
        if vector is None:
            if track is None:
                raise TrackNotFound(f"no track with id {track_id}")
            raise LookupError(
                f"track {track_id} has no embedding in the index (status: {track.status}"
                + (f", {track.error}" if track.error else "")
                + ")"
            )
        album = track.album if track is not None else None
    return similar_to_vector(catalog, vector, k, exclude={track_id}, genre=genre, album=album)


def similar_to_vector(
    catalog: Catalog,
    vector: np.ndarray,
    k: int = 10,
    exclude: set[int] | None = None,
    genre: str | None = None,
    album: str | None = None,
) -> list[dict]:
    """Nearest catalogued tracks to an arbitrary embedding (e.g. an uploaded clip).

    With ``genre`` only tracks of that predicted genre count; with ``album`` tracks
    from that album are left out. Filtered searches ask the index for more
    candidates, widening until k pass the filters or the index is exhausted.
    """
    exclude = exclude or set()
    index = catalog.index()
    filtered = genre is not None or album is not None
    fetch = k + len(exclude) if not filtered else 4 * k + len(exclude)
    while True:
        hits = [(i, sc) for i, sc in index.search(vector, fetch) if i not in exclude]
        with reading(catalog) as conn:  # plain columns: no ORM objects, no blobs
            found = conn.execute(_SUMMARIES, {"ids": [i for i, _ in hits]})
            tracks = {t.id: t for t in found}
        rows = [
            {**summary_of_row(tracks[i]), "score": score}
            for i, score in hits
            if i in tracks
            and (genre is None or tracks[i].genre == genre)
            and (album is None or tracks[i].album != album)
        ]
        if len(rows) >= k or fetch >= len(index) or not filtered:
            return rows[:k]
        fetch = min(len(index), fetch * 4)
