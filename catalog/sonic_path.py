"""Sonic similarity for players: sound-alikes scaled to [0, 1], and paths between songs.

A *sonic path* from song A to song B (the OpenSubsonic ``findSonicPath``) is a
sequence that starts with A, ends with B, never repeats a song, and moves through
the embedding space in small steps. The walk:

1. ``a``, ``b`` = the two songs' unit embeddings; ``n`` = the songs wanted.
2. For step ``i`` = 1 .. n-2, the target is the point ``i/(n-1)`` of the way from
   ``a`` to ``b`` (linear interpolation, re-normalised: the direction of the
   spherical one).
3. Ask the index for the current song's ``NEIGHBOURS`` nearest neighbours (more
   when most are used already), drop songs already on the path and B, and step to
   the one closest (cosine) to the target. Every step is thus to a real neighbour
   of the song before it, and the targets pull the walk toward B.
4. Append B. (The last step is to B itself, which, as the walk ends near B, is
   normally among the last song's neighbours too.)

Cost: n-2 index searches of ``NEIGHBOURS`` + (songs used) results, and those
vectors read back in one batch per step (O(1) each in the ``IndexIDMap2``). At
100k tracks the catalog searches HNSW, so a 25-song path is 23 HNSW searches; it
grows with the library only as the search does.
``bench/query.py`` measures it.

Similarity: cosine ``c`` in [-1, 1] is reported as ``(1 + c) / 2``, so the same
song is 1.0 and the opposite direction 0.0, as the extension asks.
"""

from __future__ import annotations

import numpy as np

from catalog.index import VectorIndex

NEIGHBOURS = 32


def scaled(cosine: float) -> float:
    """Cosine similarity mapped onto [0, 1] (1.0: the same song)."""
    return float(min(1.0, max(0.0, (1.0 + cosine) / 2.0)))


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def sonic_similar(index: VectorIndex, track_id: int, count: int) -> list[tuple[int, float]]:
    """The ``count`` nearest songs to ``track_id`` (never itself), best first, in [0, 1]."""
    vector = index.vector(track_id)
    if vector is None:
        raise LookupError(f"track {track_id} is not in the index")
    hits = index.search(vector, count + 1)
    return [(i, scaled(c)) for i, c in hits if i != track_id][:count]


def sonic_path(
    index: VectorIndex, start: int, end: int, count: int, neighbours: int = NEIGHBOURS
) -> list[tuple[int, float]]:
    """(track id, similarity to the previous song) from ``start`` to ``end`` (see above).

    ``count`` is clamped to the tracks in the index; the start's similarity is 1.0.
    A walk that runs out of unused neighbours ends early (still with ``end``).
    """
    a, b = index.vector(start), index.vector(end)
    if a is None:
        raise LookupError(f"track {start} is not in the index")
    if b is None:
        raise LookupError(f"track {end} is not in the index")
    if start == end:
        return [(start, 1.0)]
    count = max(2, min(count, len(index)))
    path: list[tuple[int, float]] = [(start, 1.0)]
    used = {start, end}
    current = a
    for step in range(1, count - 1):
        target = _unit((1 - step / (count - 1)) * a + (step / (count - 1)) * b)
        fetch = neighbours + len(used)
        while True:
            hits = [(i, c) for i, c in index.search(current, fetch) if i not in used]
            if hits or fetch >= len(index):
                break
            fetch = min(len(index), fetch * 4)
        if not hits:
            break
        vectors = index.vectors_of([i for i, _ in hits])
        best = int(np.argmax(vectors @ target))
        chosen, cosine = hits[best]
        path.append((chosen, scaled(cosine)))
        used.add(chosen)
        current = vectors[best]
    path.append((end, scaled(float(np.dot(current, b)))))
    return path
