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
    album_artist: str | None = None
    mbid: str | None = None  # MusicBrainz recording id
    isrc: str | None = None
    # the genre field's values exactly as the file holds them; None: not read (an old row)
    genres: list[str] | None = None


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
    # (n_segments,) seconds where each segment starts, when only parts of the track
    # were analysed (the analysis budget); None: consecutive from 0.
    segment_starts: np.ndarray | None = None
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


@dataclass
class GenreModelRecord:
    """A genre classifier learnt from the library's own tags, as the catalog stores it.

    A linear head over the embeddings of one embedding model: standardise with
    ``mean``/``scale``, ``coef @ x + intercept``, divide by ``temperature``, softmax.
    Below ``threshold`` the prediction shows as "uncertain". The arrays are stored
    as float32 blobs, never pickles.
    """

    genres: list[str]
    coef: np.ndarray  # (n_genres, dim)
    intercept: np.ndarray  # (n_genres,)
    mean: np.ndarray  # (dim,)
    scale: np.ndarray  # (dim,)
    temperature: float
    threshold: float
    target_precision: float
    embedding_model_id: str
    min_tracks: int
    n_tracks: int
    metrics: dict = field(default_factory=dict)  # per-genre CV precision/recall, accuracy...
    left_out: dict = field(default_factory=dict)  # genre -> tracks, too few to learn
    shipped_threshold: float | None = None  # the GTZAN head's "uncertain" line, on these tags
    version: int | None = None
