"""Which parts of a track are analysed, and which window of them the heatmap explains.

The analysis budget: a long track is analysed as a few evenly spread windows
covering at most N seconds (:func:`analysis_windows`), and only those windows are
decoded. Decoding and the network cost time in proportion to the audio they see,
and on a 2-core AVX2 CPU whole-track analysis is slower than a peer that analyses
everything with cheaper features (issue 22); bench/budget.py measures what the
budget costs in same-album precision@5 and genre agreement with full analysis.

The heatmap of a track is drawn over a short contiguous window (a few 3-second
segments) where the model was most sure of the genre it finally predicts. That
genre is known only at the end, and a long track cannot be kept in memory, so the
tracker keeps, for every genre, the best window seen so far: bounded memory
(genres x window x one segment of features) whatever the track's length.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

# Default analysis budget, in seconds per track (chosen by bench/budget.py, see
# docs/benchmarks.md "Analysis budget"); None anywhere below means the whole track.
DEFAULT_ANALYSIS_SECONDS = 90.0
# One window is this many consecutive segments. Single segments spread evenly sample
# a track better than a few longer windows of the same total: on 79 game-music
# tracks, 60 s as five 12-s windows changed the top genre of 2 tracks against full
# analysis, 90 s as thirty 3-s windows of none (bench/budget_sim.py, bench/budget.py).
# A seek costs 5-12 ms of CPU (bench/seek.py), so thirty are cheap beside decoding.
WINDOW_SEGMENTS = 1


@dataclass(frozen=True)
class Window:
    """A span of the track to decode and analyse, in seconds from its start."""

    start_s: float
    length_s: float


def analysis_windows(
    duration_s: float | None,
    budget_s: float | None,
    segment_s: float = 3.0,
    window_segments: int = WINDOW_SEGMENTS,
) -> list[Window] | None:
    """Evenly spread windows covering at most ``budget_s`` of a ``duration_s`` track.

    None means analyse the whole track: no budget (``--analysis full``), a track no
    longer than the budget, or a duration the header does not declare. Otherwise
    ``k = budget // window`` windows of ``window_segments`` segments each (fewer
    segments when the budget is shorter than one window), window i centred at
    ``(i + 0.5) / k`` of the track: equal gaps between them, half a gap before the
    first and after the last, so neither the intro nor the fade-out dominates.
    """
    if budget_s is None or not duration_s or duration_s <= budget_s:
        return None
    if budget_s <= 0:
        raise ValueError(f"the analysis budget must be positive, not {budget_s:g} s")
    per_window = min(window_segments, max(1, int(budget_s // segment_s)))
    length = per_window * segment_s
    count = max(1, int(budget_s // length))
    stride = duration_s / count
    starts = [min(max(0.0, (i + 0.5) * stride - length / 2), duration_s - length)
              for i in range(count)]  # fmt: skip
    return [Window(round(s, 3), length) for s in starts]


def describe_analysis(budget_s: float | None) -> str:
    """How tracks are analysed, for the ingest summary: "full" or the budget."""
    if budget_s is None:
        return "full tracks"
    parts = f"{WINDOW_SEGMENTS * 3:g}-s windows" if WINDOW_SEGMENTS > 1 else "3-s segments"
    return f"at most {budget_s:g} s per track, as {parts} spread evenly (shorter tracks whole)"


class BestWindowTracker:
    def __init__(self, n_classes: int, size: int = 4) -> None:
        self.size = size
        self._ring: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=size)
        self._next_index = 0
        self._last_start: float | None = None
        self._best_score = np.full(n_classes, -np.inf)
        self._best: list[tuple[int, np.ndarray] | None] = [None] * n_classes

    def push(
        self,
        features: np.ndarray,
        probabilities: np.ndarray,
        starts: np.ndarray | None = None,
        segment_s: float = 3.0,
    ) -> None:
        """Feed segments (features and their class probabilities), in order.

        ``starts`` (seconds) when the segments are not all consecutive (analysis
        windows): a window never spans a gap, so the heatmap explains audio that
        actually follows on.
        """
        if starts is None:
            starts = [None] * len(features)
        for feats, probs, start in zip(features, probabilities, starts, strict=True):
            if start is not None and self._last_start is not None:
                if abs(start - self._last_start - segment_s) > 1e-3:
                    self._gap()
            self._last_start = start
            self._ring.append((feats, probs))
            self._next_index += 1
            if len(self._ring) == self.size:
                self._consider()

    def _gap(self) -> None:
        """The segments stop following on: what the ring holds is a (short) window."""
        if 0 < len(self._ring) < self.size:
            self._consider()
        self._ring.clear()

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

        A track shorter than the window gives all of its segments; windows of the
        analysis budget shorter than ``size`` compete as they are.
        """
        if 0 < len(self._ring) < self.size:
            self._gap()  # the last short window has not been considered yet
        if self._best[cls] is None:
            if not self._ring:
                raise ValueError("no segments were pushed")
            return self._next_index - len(self._ring), np.stack([f for f, _ in self._ring])
        return self._best[cls]
