"""Sound-alikes for players: ``getSimilarSongs(2)``, ``getSonicSimilarTracks``,
``findSonicPath`` (the ``sonicSimilarity`` extension), and ``getTopSongs``.

``getSimilarSongs2`` is what most clients call for "Instant Mix": the seed may be
a song, an album or an artist (the mean of its songs' embeddings). The sonic calls
answer ``sonicMatch: [{entry: <Child>, similarity}]`` with similarity in [0, 1]
(see :mod:`catalog.sonic_path` for the scale and the path algorithm).
"""

from __future__ import annotations

import numpy as np

from catalog import sonic_path as sp
from catalog import subsonic_store as store
from ui.subsonic import entities as e
from ui.subsonic.context import Context, not_found
from ui.subsonic.registry import method

MAX_SIMILAR = 500
MAX_PATH = 200


def _seed(ctx: Context, ref: str) -> tuple[np.ndarray, set[int]]:
    """The query vector of a song, album or artist id, and the songs it covers."""
    view = ctx.view
    index = ctx.state.fresh(block=False).index()
    if view.song(ref) is not None:
        ids = [view.song(ref).id]
    elif ref in view.albums:
        ids = [s.id for s in view.albums[ref].songs]
    elif ref in view.artists:
        ids = [s.id for a in view.artists[ref].albums for s in a.songs]
    else:
        raise not_found("song, album or artist")
    vectors = [v for v in (index.vector(i) for i in ids[:500]) if v is not None]
    if not vectors:
        raise not_found("an indexed song for that id")
    mean = np.mean(vectors, axis=0)
    return mean / (np.linalg.norm(mean) or 1.0), set(ids)


def _similar_children(ctx: Context) -> list[dict]:
    vector, covered = _seed(ctx, ctx.required("id"))
    count = ctx.integer("count", 50, 0, MAX_SIMILAR)
    index = ctx.state.fresh(block=False).index()
    view = ctx.view
    hits = index.search(vector, count + len(covered))
    songs = [view.songs[i] for i, _ in hits if i not in covered and i in view.songs][:count]
    starred = store.stars(ctx.catalog, ctx.user.id)
    return [e.child(view, s, starred) for s in songs]


@method("getSimilarSongs2")
def similar_songs2(ctx: Context) -> dict:
    return {"similarSongs2": {"song": _similar_children(ctx)}}


@method("getSimilarSongs")
def similar_songs(ctx: Context) -> dict:
    return {"similarSongs": {"song": _similar_children(ctx)}}


def _matches(ctx: Context, pairs: list[tuple[int, float]]) -> dict:
    view = ctx.view
    starred = store.stars(ctx.catalog, ctx.user.id)
    return {
        "sonicMatch": [
            {"entry": e.child(view, view.songs[i], starred), "similarity": round(sim, 6)}
            for i, sim in pairs
            if i in view.songs
        ]
    }


def _song_track(ctx: Context, name: str) -> int:
    song = ctx.view.song(ctx.required(name))
    if song is None:
        raise not_found("song")
    return song.id


@method("getSonicSimilarTracks")
def sonic_similar_tracks(ctx: Context) -> dict:
    track = _song_track(ctx, "id")
    count = ctx.integer("count", 10, 0, MAX_SIMILAR)
    index = ctx.state.fresh(block=False).index()
    try:
        pairs = sp.sonic_similar(index, track, count)
    except LookupError:
        raise not_found("an indexed song") from None
    return _matches(ctx, pairs)


@method("findSonicPath")
def find_sonic_path(ctx: Context) -> dict:
    start, end = _song_track(ctx, "startSongId"), _song_track(ctx, "endSongId")
    count = ctx.integer("count", 25, 2, MAX_PATH)
    index = ctx.state.fresh(block=False).index()
    try:
        pairs = sp.sonic_path(index, start, end, count)
    except LookupError:
        raise not_found("an indexed song") from None
    return _matches(ctx, pairs)


@method("getTopSongs")
def top_songs(ctx: Context) -> dict:
    ctx.required("artist")
    return {"topSongs": {"song": []}}  # no play charts from outside the library
