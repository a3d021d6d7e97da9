"""Random views of a track for contrastive pretraining, made in the spectrogram domain.

Two views of one track are positives; the network must find what they share
(the instruments, the production, the style) and ignore what the augmentations
change. Everything is done on the cached unreferenced dB mel spectrogram, batched
in torch, because decoding or re-running the STFT for every view would cost more
than the network on two CPU cores. ``VIEW_PRESETS`` names the two recipes used:
``crops`` (position and masks only, the default) and ``full`` (everything below):

- **crop**: a 3-second window at a random position (two views of a track are
  two different positions, as in COLA);
- **tempo**: the window is stretched or squeezed in time by up to ``tempo``
  (±8 %) by interpolating along frames, i.e. a view covers 3 s × rate of audio;
- **pitch**: a shift of up to ``pitch_bins`` mel bands by interpolation along the
  mel axis. Mel bands are not equally spaced in semitones, so this is a small
  approximate transposition, not an exact one;
- **EQ**: a smooth random curve in dB across the mel bands (random control
  points, linearly interpolated): boosts and cuts, including low- and high-shelf
  shapes that mimic filtering;
- **noise**: with probability ``noise_prob``, noise added in the *power* domain
  at a random SNR, with a random spectral tilt and per-bin fluctuation;
- **masks**: SpecAugment time and frequency masks after normalisation
  (``augment.spec_augment``).

There is no separate **gain** augmentation, on purpose: each view is referenced
to its own maximum and normalised to zero mean and unit variance
(``augment.crop``), so adding a constant in dB changes nothing the network sees.
A level change only matters relative to something at a fixed level, which is
exactly what the noise at a random SNR models.

Views end normalised exactly as the front end normalises a segment, so the
network never sees a feature distribution that inference does not produce.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from embeddings.training.augment import spec_augment

AMIN = 1e-10


@dataclass(frozen=True)
class ViewConfig:
    """Ranges of the view augmentations; stored in the pretraining checkpoint's info."""

    tempo: float = 0.08  # +- fraction of time stretch
    pitch_bins: float = 2.0  # +- mel bands of shift
    eq_db: float = 6.0  # +- dB at each EQ control point
    eq_points: int = 6
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (5.0, 30.0)
    noise_tilt_db: float = 12.0  # +- dB from the lowest to the highest band
    freq_masks: int = 2
    freq_width: int = 16
    time_masks: int = 2
    time_width: int = 20

    def to_dict(self) -> dict:
        return asdict(self)


VIEW_PRESETS: dict[str, ViewConfig] = {
    # every augmentation: the network must ignore EQ, noise, pitch and tempo
    "full": ViewConfig(),
    # COLA's recipe: two positions in a track, plus masks. A track's (and an
    # album's) mix, EQ and instrument colour stay something the two views share,
    # so the embedding keeps them, which is what sound-alike search looks for.
    "crops": ViewConfig(tempo=0.0, pitch_bins=0.0, eq_db=0.0, noise_prob=0.0),
}


@dataclass
class Crops:
    """Where each view was cut: excerpt frame index and tempo rate (source frames per frame)."""

    track: np.ndarray  # (n,) index into the corpus
    start: np.ndarray  # (n,) first source frame
    rate: np.ndarray  # (n,) > 1 squeezes more audio into the view (faster tempo)

    def source_frames(self, frames: int) -> np.ndarray:
        """How many source frames each view spans."""
        return np.ceil(frames * self.rate).astype(np.int64)


def draw_crops(
    track: np.ndarray,
    lengths: np.ndarray,
    frames: int,
    config: ViewConfig,
    rng: np.random.Generator,
) -> Crops:
    """Random positions and tempo rates for views of tracks of ``lengths`` frames."""
    track = np.asarray(track, dtype=np.int64)
    n = len(track)
    rate = (
        rng.uniform(1 - config.tempo, 1 + config.tempo, size=n) if config.tempo > 0 else np.ones(n)
    )
    span = np.ceil(frames * rate).astype(np.int64)
    high = np.maximum(1, np.asarray(lengths)[track] - span + 1)
    start = rng.integers(0, high)
    return Crops(track=track, start=start.astype(np.int64), rate=rate)


def cut_windows(specs: Sequence[np.ndarray], crops: Crops, frames: int) -> np.ndarray:
    """The raw dB windows the views are made from: (n, n_mels, width) float32.

    ``width`` is the longest span any view needs; shorter views use its beginning.
    A track shorter than the window is padded with its quietest value, as
    ``augment.crop`` pads.
    """
    width = int(crops.source_frames(frames).max()) + 1
    n_mels = specs[0].shape[0]
    out = np.empty((len(crops.track), n_mels, width), dtype=np.float32)
    for i, (t, s) in enumerate(zip(crops.track, crops.start, strict=True)):
        window = specs[t][:, s : s + width]
        out[i, :, : window.shape[1]] = window
        if window.shape[1] < width:
            out[i, :, window.shape[1] :] = float(specs[t].min()) if specs[t].size else 0.0
    return out


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def warp(raw: torch.Tensor, rate: torch.Tensor, shift: torch.Tensor, frames: int) -> torch.Tensor:
    """Resample (n, mels, width) windows to (n, mels, frames): time by ``rate``, mels by ``shift``.

    Output frame j reads source frame ``j * rate``; output band i reads source band
    ``i - shift`` (content moves up by ``shift`` bands), bilinearly; edges repeat.
    With rate 1 and shift 0 it is an exact copy of the first ``frames`` frames.
    """
    n, n_mels, width = raw.shape
    steps = torch.arange(frames, dtype=torch.float32)
    bands = torch.arange(n_mels, dtype=torch.float32)
    x = 2 * (steps[None, :] * rate[:, None]) / max(1, width - 1) - 1  # (n, frames)
    y = 2 * (bands[None, :] - shift[:, None]) / max(1, n_mels - 1) - 1  # (n, mels)
    grid = torch.stack(
        [x[:, None, :].expand(n, n_mels, frames), y[:, :, None].expand(n, n_mels, frames)], dim=-1
    )
    out = F.grid_sample(
        raw[:, None], grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    return out[:, 0]


def random_eq(n: int, n_mels: int, config: ViewConfig, gen: torch.Generator) -> torch.Tensor:
    """(n, n_mels) smooth random dB curves."""
    points = (torch.rand(n, 1, max(2, config.eq_points), generator=gen) * 2 - 1) * config.eq_db
    return F.interpolate(points, size=n_mels, mode="linear", align_corners=True)[:, 0]


def add_noise(db: torch.Tensor, config: ViewConfig, gen: torch.Generator) -> torch.Tensor:
    """Add coloured noise in the power domain to a random subset of (n, mels, frames) views."""
    n, n_mels, n_frames = db.shape
    chosen = torch.nonzero(torch.rand(n, generator=gen) < config.noise_prob).flatten()
    if len(chosen) == 0:
        return db
    m = len(chosen)
    power = torch.pow(10.0, db[chosen] / 10)
    snr = _uniform(m, config.snr_db[0], config.snr_db[1], gen)
    level = power.mean(dim=(1, 2)) * torch.pow(10.0, -snr / 10)
    tilt = _uniform(m, -config.noise_tilt_db, config.noise_tilt_db, gen)
    shape_db = tilt[:, None] * torch.linspace(-0.5, 0.5, n_mels)[None, :]
    shape = torch.pow(10.0, shape_db / 10)
    shape = shape / shape.mean(dim=1, keepdim=True)
    # log-normal fluctuation per bin, mean one: a mel band sums several FFT bins
    fluctuation = torch.exp(0.5 * torch.randn(m, n_mels, n_frames, generator=gen) - 0.125)
    noise = level[:, None, None] * shape[:, :, None] * fluctuation
    out = db.clone()
    out[chosen] = 10 * torch.log10(torch.clamp(power + noise, min=AMIN))
    return out


def reference_and_normalise(db: torch.Tensor, top_db: float) -> torch.Tensor:
    """``augment.crop``'s referencing, floor and normalisation, batched: (n, mels, frames)."""
    db = db - db.amax(dim=(1, 2), keepdim=True)
    db = torch.clamp(db, min=-top_db)
    centred = db - db.mean(dim=(1, 2), keepdim=True)
    std = centred.std(dim=(1, 2), keepdim=True, unbiased=False)
    return torch.where(std > 1e-6, centred / std.clamp(min=1e-6), centred)


def make_views(
    raw: np.ndarray,
    crops: Crops,
    frames: int,
    top_db: float,
    config: ViewConfig,
    gen: torch.Generator,
) -> torch.Tensor:
    """Augmented, normalised views (n, 1, mels, frames) from :func:`cut_windows` output."""
    x = torch.from_numpy(raw)
    n, n_mels, _ = x.shape
    rate = torch.as_tensor(crops.rate, dtype=torch.float32)
    shift = _uniform(n, -config.pitch_bins, config.pitch_bins, gen)
    x = warp(x, rate, shift, frames)
    if config.eq_db > 0:
        x = x + random_eq(n, n_mels, config, gen)[:, :, None]
    if config.noise_prob > 0:
        x = add_noise(x, config, gen)
    x = reference_and_normalise(x, top_db)[:, None]
    return spec_augment(
        x, gen, config.freq_masks, config.freq_width, config.time_masks, config.time_width
    )


def crop_seconds(
    crops: Crops, frames: int, hop_length: int, sample_rate: int, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of each view in seconds of the *file* (for teacher targets)."""
    hop_s = hop_length / sample_rate
    start = offsets[crops.track] + crops.start * hop_s
    end = start + frames * crops.rate * hop_s
    return start, end
