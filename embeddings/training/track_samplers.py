"""Which tracks a contrastive step draws: shuffled passes over tracks, or over albums.

A batch never holds the same track twice (two views of one track must be each
other's only positive). With album positives a step draws a few albums (a track's
album is its folder) and several tracks of each, so that every view has the other
tracks of its album to find.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embeddings.training.unlabelled import UnlabelledTrack


class TrackSampler:
    """Tracks in shuffled passes; a batch never holds the same track twice."""

    def __init__(self, n_tracks: int, rng: np.random.Generator) -> None:
        self.n = n_tracks
        self.rng = rng
        self.queue: list[int] = []

    def take(self, k: int) -> np.ndarray:
        chosen: list[int] = []
        while len(chosen) < k:
            if not self.queue:
                self.queue = self.rng.permutation(self.n).tolist()
            t = self.queue.pop()
            if t not in chosen:
                chosen.append(t)
        return np.array(chosen, dtype=np.int64)


class AlbumSampler:
    """Albums in shuffled passes, up to ``per_album`` distinct tracks from each.

    Each album cycles through its own shuffled tracks, so every track is visited
    and a large album does not crowd out the small ones.
    """

    def __init__(self, album_of: np.ndarray, per_album: int, rng: np.random.Generator) -> None:
        self.rng = rng
        self.per_album = max(1, per_album)
        self.members = [np.flatnonzero(album_of == a) for a in np.unique(album_of)]
        self.track_queues: list[list[int]] = [[] for _ in self.members]
        self.album_queue: list[int] = []

    def _tracks_of(self, album: int, k: int) -> list[int]:
        chosen: list[int] = []
        members = self.members[album]
        while len(chosen) < min(k, len(members)):
            if not self.track_queues[album]:
                self.track_queues[album] = self.rng.permutation(members).tolist()
            t = self.track_queues[album].pop()
            if t not in chosen:
                chosen.append(t)
        return chosen

    def take(self, k: int) -> np.ndarray:
        chosen: list[int] = []
        while len(chosen) < k:
            if not self.album_queue:
                self.album_queue = self.rng.permutation(len(self.members)).tolist()
            album = self.album_queue.pop()
            picked = self._tracks_of(album, min(self.per_album, k - len(chosen)))
            chosen += [t for t in picked if t not in chosen]
        return np.array(chosen[:k], dtype=np.int64)


def album_labels(tracks: Sequence[UnlabelledTrack]) -> np.ndarray:
    """One integer per track: the index of its folder, which stands for its album."""
    folders = sorted({t.path.parent for t in tracks})
    index = {folder: i for i, folder in enumerate(folders)}
    return np.array([index[t.path.parent] for t in tracks], dtype=np.int64)
