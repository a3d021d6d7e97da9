"""The log-mel front end shared by training, ingest and explanations.

Every model sees exactly the same features, so the parameters travel inside each
checkpoint (``FrontendConfig.to_dict``) instead of living as constants in callers.
The numbers match the source projects: 22,050 Hz mono, 128 mel bands, a 2048-point
FFT, hop 512, dB scale, and 3-second segments of 128 x 130 frames, each normalised
on its own so loudness differences between recordings do not leak into the model.

Content above ``band_limit_hz`` (10 kHz) is left out of every mel band. A library
is mostly 44.1 or 48 kHz audio, and resampling it to 22,050 Hz rolls off the last
kilohertz below Nyquist (soxr: -1 dB at 10.4 kHz, -30 dB at 10.8 kHz), while
training clips recorded at 22,050 Hz keep it; without the limit the same music
read from a 44.1 kHz file reached a network trained on such clips as a different
spectrogram (``docs/research/scripts/rate_agreement.py`` measures it). Checkpoints
made before the limit existed record no ``band_limit_hz`` and keep the full band.

The STFT is computed with NumPy/SciPy rather than librosa's high-level call because
this runs in decode workers for every segment of every track; ``tests`` check it
against ``librosa.feature.melspectrogram`` + ``power_to_db``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class FrontendConfig:
    """Parameters of the log-mel front end; stored in every checkpoint."""

    sample_rate: int = 22_050
    n_mels: int = 128
    n_fft: int = 2048
    hop_length: int = 512
    segment_seconds: float = 3.0
    top_db: float = 80.0
    band_limit_hz: float | None = 10_000.0

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sample_rate))

    @property
    def segment_frames(self) -> int:
        # librosa's centred framing: one frame per hop plus the first.
        return 1 + self.segment_samples // self.hop_length

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_mels, self.segment_frames)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FrontendConfig:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known.setdefault("band_limit_hz", None)  # a checkpoint from before the limit
        return cls(**known)

    def same_shape(self, other: FrontendConfig) -> bool:
        """True when a network trained on ``other`` takes these features as input.

        Only the band limit may differ: it empties the top bands but leaves every
        band where it was, so a backbone carries over (fine-tuning adapts it).
        """
        return replace(self, band_limit_hz=None) == replace(other, band_limit_hz=None)


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mels = hz / _MEL_F_SP
    log_part = hz >= _MEL_MIN_LOG_HZ
    mels[log_part] = _MEL_MIN_LOG_MEL + np.log(hz[log_part] / _MEL_MIN_LOG_HZ) / _MEL_LOGSTEP
    return mels


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    hz = mels * _MEL_F_SP
    log_part = mels >= _MEL_MIN_LOG_MEL
    hz[log_part] = _MEL_MIN_LOG_HZ * np.exp(_MEL_LOGSTEP * (mels[log_part] - _MEL_MIN_LOG_MEL))
    return hz


_MEL_F_SP = 200.0 / 3
_MEL_MIN_LOG_HZ = 1000.0
_MEL_MIN_LOG_MEL = _MEL_MIN_LOG_HZ / _MEL_F_SP
_MEL_LOGSTEP = np.log(6.4) / 27.0


def mel_band_edges(config: FrontendConfig) -> np.ndarray:
    """The n_mels + 2 mel-spaced frequencies (Hz) the triangular filters span.

    The same as ``librosa.mel_frequencies(n_mels + 2, fmax=sample_rate / 2)``.
    Filter i rises from edge i, peaks at edge i + 1 and falls to edge i + 2.
    """
    top_mel = hz_to_mel(np.array([config.sample_rate / 2.0]))[0]
    return mel_to_hz(np.linspace(0.0, top_mel, config.n_mels + 2))


@lru_cache(maxsize=8)
def mel_filterbank(config: FrontendConfig) -> np.ndarray:
    """Slaney-normalised triangular mel filters, the same as ``librosa.filters.mel``.

    Written out rather than imported: importing librosa costs each decode worker
    about 110 MB of memory for this one small matrix (``tests`` check equality).
    FFT bins above ``config.band_limit_hz`` get no weight (see the module docstring).
    """
    fft_hz = np.linspace(0.0, config.sample_rate / 2.0, 1 + config.n_fft // 2)
    edges = mel_band_edges(config)
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # equal area per filter (Slaney)
    if config.band_limit_hz is not None:
        weights[:, fft_hz > config.band_limit_hz] = 0.0
    return weights.astype(np.float32)


@lru_cache(maxsize=8)
def _window(n_fft: int) -> np.ndarray:
    n = np.arange(n_fft, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)).astype(np.float32)  # periodic Hann


def power_mel(segment: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Mel power spectrogram of one mono segment (centred, zero-padded frames)."""
    pad = config.n_fft // 2
    padded = np.pad(segment.astype(np.float32, copy=False), (pad, pad))
    n_frames = 1 + (len(padded) - config.n_fft) // config.hop_length
    frames = np.lib.stride_tricks.as_strided(
        padded,
        shape=(n_frames, config.n_fft),
        strides=(padded.strides[0] * config.hop_length, padded.strides[0]),
        writeable=False,
    )
    import scipy.fft  # here, not at the top: a no-op ingest imports this module and
    # never computes a spectrum, and SciPy's FFT costs it ~0.3 s of start-up

    spectrum = scipy.fft.rfft(frames * _window(config.n_fft), axis=1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    return mel_filterbank(config) @ power.T


def to_db(power: np.ndarray, top_db: float) -> np.ndarray:
    """``librosa.power_to_db(S, ref=np.max, top_db=...)`` without the import."""
    amin = 1e-10
    log_spec = 10.0 * np.log10(np.maximum(amin, power))
    log_spec -= 10.0 * np.log10(max(amin, float(power.max(initial=0.0))))
    return np.maximum(log_spec, log_spec.max(initial=0.0) - top_db)


def normalise(features: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per segment; a constant segment becomes zeros."""
    centred = features - features.mean()
    std = float(centred.std())
    return centred / std if std > 1e-6 else centred


def segment_features(segment: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """The model input for one segment: normalised log-mel, shape ``config.shape``."""
    if len(segment) != config.segment_samples:
        raise ValueError(f"segment has {len(segment)} samples, expected {config.segment_samples}")
    return normalise(to_db(power_mel(segment, config), config.top_db)).astype(np.float32)


def batch_features(segments: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Features for a (n, segment_samples) array of segments: (n, n_mels, frames)."""
    out = np.empty((len(segments), *config.shape), dtype=np.float32)
    for i, segment in enumerate(segments):
        out[i] = segment_features(segment, config)
    return out


def split_segments(
    audio: np.ndarray, config: FrontendConfig, min_tail_seconds: float = 1.0
) -> np.ndarray:
    """Cut mono audio into consecutive full segments, zero-padding where needed.

    A clip shorter than one segment is padded to one segment, so tiny files still
    get a prediction. A trailing remainder is kept (padded) only when it holds at
    least ``min_tail_seconds`` of audio, so a half-second tail of silence or
    applause does not count as much as a full segment.
    """
    n = config.segment_samples
    if len(audio) == 0:
        return np.zeros((0, n), dtype=np.float32)
    full, tail = divmod(len(audio), n)
    keep_tail = tail >= min_tail_seconds * config.sample_rate or full == 0
    count = full + (1 if keep_tail and tail else 0)
    out = np.zeros((count, n), dtype=np.float32)
    flat = out.reshape(-1)
    used = min(len(audio), count * n)
    flat[:used] = audio[:used]
    return out


class StreamingSegmenter:
    """Turns a stream of audio blocks into full segments, as :func:`split_segments` would.

    Holds at most one segment of audio between calls, so memory does not grow with
    the length of the track.
    """

    def __init__(self, config: FrontendConfig, min_tail_seconds: float = 1.0) -> None:
        self.config = config
        self.min_tail_seconds = min_tail_seconds
        self._buffer = np.zeros(0, dtype=np.float32)
        self.emitted = 0
        self.samples_seen = 0

    def push(self, block: np.ndarray) -> np.ndarray:
        """Feed a block; returns the (k, segment_samples) segments it completed."""
        self.samples_seen += len(block)
        data = np.concatenate([self._buffer, block]) if len(self._buffer) else block
        n = self.config.segment_samples
        full = len(data) // n
        segments = data[: full * n].reshape(full, n).astype(np.float32, copy=True)
        self._buffer = data[full * n :].astype(np.float32, copy=True)
        self.emitted += full
        return segments

    def finish(self) -> np.ndarray:
        """The padded tail segment (if kept) once the stream has ended."""
        if self.emitted and len(self._buffer) < self.min_tail_seconds * self.config.sample_rate:
            return np.zeros((0, self.config.segment_samples), dtype=np.float32)
        if not self.emitted and len(self._buffer) == 0:
            return np.zeros((0, self.config.segment_samples), dtype=np.float32)
        tail = split_segments(self._buffer, self.config, self.min_tail_seconds)
        self.emitted += len(tail)
        self._buffer = np.zeros(0, dtype=np.float32)
        return tail
