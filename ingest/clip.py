"""Analysing one clip on the fly (an upload), and the arrays the track views draw.

Nothing here is stored: an uploaded clip is decoded, cut into segments, run
through the genre model and aggregated exactly as the ingest does for library
tracks (same front end, same segmenting, same mean-of-segment embedding), so its
embedding can be searched against the index.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embeddings.audio import silence_reason
from embeddings.checkpoint import GenreModel
from embeddings.frontend import FrontendConfig, batch_features, power_mel, split_segments, to_db
from embeddings.inference import AGGREGATIONS, Predictor, aggregate, l2_normalise, top_k
from ingest.upload_decode import MAX_CLIP_SECONDS, ClipError, decode_isolated

BATCH_SEGMENTS = 32


@dataclass
class ClipAnalysis:
    model_id: str
    model_trained: bool
    genres: list[str]
    aggregation: str
    probabilities: np.ndarray  # (n_genres,) aggregated
    segment_probabilities: np.ndarray  # (n_segments, n_genres)
    embedding: np.ndarray  # (dim,) L2-normalised, comparable with the index's vectors
    duration_s: float
    segment_seconds: float
    truncated: bool = False  # longer than MAX_CLIP_SECONDS: only the start was analysed
    extra: dict = field(default_factory=dict)

    def top(self, k: int = 3) -> list[dict]:
        return [
            {"genre": g, "probability": p} for g, p in top_k(self.probabilities, self.genres, k)
        ]

    def timeline(self) -> list[dict]:
        """Per-segment predictions, shaped like the catalog's stored timeline."""
        out = []
        for i, row in enumerate(self.segment_probabilities):
            best = int(np.argmax(row))
            out.append(
                {
                    "index": i,
                    "start_s": i * self.segment_seconds,
                    # the last segment (padded) ends where the audio does: a 10-s clip
                    # is listed 9-10 s, not 9-12 s
                    "end_s": min((i + 1) * self.segment_seconds,
                                 max(self.duration_s, i * self.segment_seconds)),
                    "genre": self.genres[best],
                    "confidence": float(row[best]),
                    "probabilities": dict(zip(self.genres, map(float, row), strict=True)),
                }
            )
        return out

    def to_dict(self, k: int = 3) -> dict:
        return {
            "model_id": self.model_id,
            "model_trained": self.model_trained,
            "aggregation": self.aggregation,
            "duration_s": self.duration_s,
            "truncated": self.truncated,
            "genre": self.genres[int(np.argmax(self.probabilities))],
            "confidence": float(np.max(self.probabilities)),
            "top_k": self.top(k),
            "probabilities": dict(zip(self.genres, map(float, self.probabilities), strict=True)),
            "timeline": self.timeline(),
        }


def decode_clip(path: Path, sample_rate: int, max_seconds: float = MAX_CLIP_SECONDS):
    """Mono audio at ``sample_rate`` (at most ``max_seconds``) and whether it was cut.

    Decoded in a child process with memory and CPU limits (``ingest.upload_decode``):
    the file may be anyone's upload, and the caller is the long-lived service.
    """
    return decode_isolated(Path(path), sample_rate, max_seconds)


class ClipAnalyser:
    """Holds a model on its device; analyses clips one at a time (thread-safe)."""

    def __init__(
        self, model: GenreModel, device: str | None = None, precision: str = "auto"
    ) -> None:
        self.model = model
        self.predictor = Predictor(model, device, precision)
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        return str(self.predictor.device)

    @property
    def frontend(self) -> FrontendConfig:
        return self.model.frontend

    def analyse_audio(
        self, audio: np.ndarray, aggregation: str = "mean", truncated: bool = False
    ) -> ClipAnalysis:
        if aggregation not in AGGREGATIONS:
            raise ClipError(f"aggregation must be one of {', '.join(AGGREGATIONS)}")
        config = self.frontend
        if len(audio) == 0:
            raise ClipError("no audio could be decoded")
        if silent := silence_reason(audio):
            raise ClipError(silent)
        segments = split_segments(audio, config)
        probs, embedding_sum = [], None
        with self._lock:
            for start in range(0, len(segments), BATCH_SEGMENTS):
                out = self.predictor.predict(
                    batch_features(segments[start : start + BATCH_SEGMENTS], config)
                )
                probs.append(out.probabilities)
                part = out.embeddings.sum(axis=0, dtype=np.float64)
                embedding_sum = part if embedding_sum is None else embedding_sum + part
        seg_probs = np.concatenate(probs)
        if not (np.isfinite(seg_probs).all() and np.isfinite(embedding_sum).all()):
            # decode_all cleans the samples; this guards the answer (and the search)
            # against whatever else could still make the network return NaN.
            raise ClipError("the model produced non-finite output (NaN or infinity) for it")
        return ClipAnalysis(
            model_id=self.model.model_id,
            model_trained=self.model.trained,
            genres=list(self.model.genres),
            aggregation=aggregation,
            probabilities=aggregate(seg_probs, aggregation),
            segment_probabilities=seg_probs,
            embedding=l2_normalise((embedding_sum / len(segments)).astype(np.float32)),
            duration_s=len(audio) / config.sample_rate,
            segment_seconds=config.segment_seconds,
            truncated=truncated,
        )

    def analyse_file(self, path: Path, aggregation: str = "mean") -> ClipAnalysis:
        audio, truncated = decode_clip(path, self.frontend.sample_rate)
        return self.analyse_audio(audio, aggregation, truncated)

    def analyse_bytes(
        self, data: bytes, filename: str = "upload", aggregation: str = "mean"
    ) -> ClipAnalysis:
        """Analyse an uploaded file's bytes (written to a private temporary file)."""
        suffix = Path(filename).suffix.lower()
        if not suffix.isascii() or not suffix[1:].isalnum() or len(suffix) > 6:
            suffix = ""
        fd, name = tempfile.mkstemp(prefix="sonic-upload-", suffix=suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return self.analyse_file(Path(name), aggregation)
        finally:
            os.unlink(name)


# -- what the track views draw -----------------------------------------------------------


@dataclass
class Preview:
    """A waveform envelope and a mel spectrogram, reduced to a drawable size."""

    sample_rate: int
    duration_s: float
    envelope_min: np.ndarray  # (bins,) per-bin minimum sample
    envelope_max: np.ndarray  # (bins,) per-bin maximum sample
    mel_db: np.ndarray  # (n_mels, columns) dB relative to the clip's peak
    seconds_shown: float  # audio covered by the arrays (the start, for long tracks)


def preview(
    audio: np.ndarray,
    config: FrontendConfig,
    bins: int = 1200,
    max_columns: int = 1200,
) -> Preview:
    """Envelope and log-mel of mono audio at ``config.sample_rate`` for display."""
    sr = config.sample_rate
    n = len(audio)
    if n == 0:
        empty = np.zeros(0, dtype=np.float32)
        return Preview(sr, 0.0, empty, empty, np.zeros((config.n_mels, 0), np.float32), 0.0)
    bins = max(1, min(bins, n))
    edges = np.linspace(0, n, bins + 1).astype(np.int64)
    lo = np.minimum.reduceat(audio, edges[:-1])
    hi = np.maximum.reduceat(audio, edges[:-1])
    # 30-second pieces keep the STFT's working memory small on long tracks.
    step = 30 * sr - (30 * sr) % config.hop_length
    power = np.concatenate(
        [power_mel(audio[i : i + step], config) for i in range(0, n, step)], axis=1
    )
    mel = to_db(power, config.top_db)
    if mel.shape[1] > max_columns:  # average neighbouring frames down to max_columns
        cols = np.linspace(0, mel.shape[1], max_columns + 1).astype(np.int64)
        mel = np.add.reduceat(mel, cols[:-1], axis=1) / np.diff(cols)[None, :]
    return Preview(sr, n / sr, lo, hi, mel.astype(np.float32), n / sr)


def preview_file(path: Path, config: FrontendConfig, max_seconds: float = 600.0) -> Preview:
    """:func:`preview` of a file's first ``max_seconds`` (raises :class:`ClipError`)."""
    audio, _ = decode_clip(path, config.sample_rate, max_seconds)
    return preview(audio, config)
