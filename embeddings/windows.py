"""Choosing a representative window of a track while it streams past.

The heatmap of a track is drawn over a short contiguous window (a few 3-second
segments) where the model was most sure of the genre it finally predicts. That
genre is known only at the end, and a long track cannot be kept in memory, so the
tracker keeps, for every genre, the best window seen so far: bounded memory
(genres x window x one segment of features) whatever the track's length.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class BestWindowTracker:
    def __init__(self, n_classes: int, size: int = 4) -> None:
        self.size = size
        self._ring: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=size)
        self._next_index = 0
        self._best_score = np.full(n_classes, -np.inf)
        self._best: list[tuple[int, np.ndarray] | None] = [None] * n_classes

    def push(self, features: np.ndarray, probabilities: np.ndarray) -> None:
        """Feed consecutive segments (features and their class probabilities), in order."""
        for feats, probs in zip(features, probabilities, strict=True):
            self._ring.append((feats, probs))
            self._next_index += 1
            if len(self._ring) == self.size:
                self._consider()

    def _consider(self) -> None:
        means = np.mean([p for _, p in self._ring], axis=0)
        better = np.flatnonzero(means > self._best_score)
        if len(better) == 0:
            return
        window = np.stack([f for f, _ in self._ring])
        start = self._next_index - len(self._ring)
        for cls in better:
            self._best_score[cls] = means[cls]
            self._best[cls] = (start, window)

    def best(self, cls: int) -> tuple[int, np.ndarray]:
        """(first segment index, features) of the best window for ``cls``.

        A track shorter than the window gives all of its segments.
        """
        if self._best[cls] is None:
            if not self._ring:
                raise ValueError("no segments were pushed")
            return self._next_index - len(self._ring), np.stack([f for f, _ in self._ring])
        return self._best[cls]
