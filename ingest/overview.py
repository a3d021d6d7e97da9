"""A waveform overview computed while a track is decoded for analysis.

Why at ingest: drawing a track's waveform later meant decoding the whole file again
(12-14 s for a 10-minute Opus track on a 2-core machine), while the analysis has
every sample in hand already. A few hundred (min, max) pairs are enough for a
player-sized waveform and cost ~1.6 kB per track as float16.
"""

from __future__ import annotations

import numpy as np

POINTS = 400  # pairs stored per track (fewer for tracks shorter than that many windows)
WINDOW_S = 0.05  # the streaming resolution before the final reduction


class OverviewBuilder:
    """Min/max per short window over streamed mono blocks; bounded by the track's length.

    ``push`` takes the decoder's blocks as they come; ``finish`` reduces the windows to
    at most ``POINTS`` equal slices. Memory is two floats per 50 ms of audio (a
    10-hour track: 5.8 MB) plus one partial window.
    """

    def __init__(self, sample_rate: int) -> None:
        self.window = max(1, int(sample_rate * WINDOW_S))
        self._rest = np.zeros(0, dtype=np.float32)
        self._lo: list[np.ndarray] = []
        self._hi: list[np.ndarray] = []

    def push(self, block: np.ndarray) -> None:
        samples = np.asarray(block, dtype=np.float32).reshape(-1)
        if self._rest.size:
            samples = np.concatenate([self._rest, samples])
        whole = len(samples) // self.window * self.window
        if whole:
            frames = samples[:whole].reshape(-1, self.window)
            self._lo.append(frames.min(axis=1))
            self._hi.append(frames.max(axis=1))
        self._rest = samples[whole:].copy()

    def finish(self, points: int = POINTS) -> np.ndarray:
        """(2, n) float16: row 0 the minima, row 1 the maxima, n <= ``points``."""
        lo, hi = list(self._lo), list(self._hi)
        if self._rest.size:
            lo.append(self._rest.min(keepdims=True))
            hi.append(self._rest.max(keepdims=True))
        if not lo:
            return np.zeros((2, 0), dtype=np.float16)
        lo_all, hi_all = np.concatenate(lo), np.concatenate(hi)
        n = min(points, len(lo_all))
        edges = np.linspace(0, len(lo_all), n + 1).astype(np.int64)[:-1]
        out = np.stack([np.minimum.reduceat(lo_all, edges), np.maximum.reduceat(hi_all, edges)])
        return np.clip(out, -1.0, 1.0).astype(np.float16)


def encode(overview: np.ndarray) -> bytes:
    """How the catalog stores an overview: the float16 minima then the maxima."""
    return np.ascontiguousarray(overview, dtype=np.float16).tobytes()


def decode(blob: bytes | None) -> np.ndarray | None:
    """The stored overview back as (2, n) float32, or None when none was stored."""
    if not blob:
        return None
    flat = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
    return flat.reshape(2, -1)


def overview_of_windows(
    segments: np.ndarray, starts: np.ndarray, sample_rate: int, duration_s: float,
    points: int = POINTS,
) -> np.ndarray:
    """The overview of a track analysed under the budget: only its windows were decoded.

    Each sample lands in the slice of the whole track it belongs to, so the waveform
    keeps the track's time axis; slices between windows stay at zero (flat), which
    shows honestly which parts were heard, at no extra decode.
    """
    n = max(1, min(points, int(duration_s / WINDOW_S) or 1))
    lo = np.zeros(n, dtype=np.float32)
    hi = np.zeros(n, dtype=np.float32)
    slice_s = max(duration_s, 1e-9) / n
    offsets = np.arange(segments.shape[1], dtype=np.float64) / sample_rate
    for samples, start in zip(segments, starts, strict=True):
        slots = ((start + offsets) / slice_s).astype(np.int64).clip(0, n - 1)
        np.minimum.at(lo, slots, samples.astype(np.float32))
        np.maximum.at(hi, slots, samples.astype(np.float32))
    return np.clip(np.stack([lo, hi]), -1.0, 1.0).astype(np.float16)
