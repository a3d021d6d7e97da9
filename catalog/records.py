"""Plain data handed to the catalog by the layers above.

The catalog stores these; it does not know how they were computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FileFacts:
    """What the file system says about a file, plus its content hash."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str | None = None
    format: str | None = None


@dataclass
class Tags:
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    track_number: int | None = None
    duration_s: float | None = None


@dataclass
class AudioFacts:
    """Properties of the decoded stream (before resampling and downmixing)."""

    duration_s: float
    sample_rate: int
    channels: int


@dataclass
class Explanation:
    """Why the model predicted the track's genre: a heatmap and where it looked."""

    heatmap_path: str | None
    genre: str
    start_s: float
    end_s: float
    focus: dict[str, float]  # low / mid / high shares of the heatmap's mass, sum to 1


@dataclass
class Analysis:
    """The result of running a genre model over one whole track."""

    model_id: str
    genres: list[str]
    probabilities: np.ndarray  # (n_genres,) aggregated over segments, sums to 1
    embedding: np.ndarray  # (dim,) float32, L2-normalised
    segment_probabilities: np.ndarray  # (n_segments, n_genres)
    segment_seconds: float
    segment_embeddings: np.ndarray | None = None  # (n_segments, d) float16, unit length
    explanation: Explanation | None = None
    warning: str | None = None  # e.g. a truncated file analysed as far as it decodes
    overview: bytes | None = None  # waveform (min, max) pairs, float16 (ingest.overview)
    extra: dict = field(default_factory=dict)

    @property
    def genre(self) -> str:
        return self.genres[int(np.argmax(self.probabilities))]

    @property
    def confidence(self) -> float:
        return float(np.max(self.probabilities))
