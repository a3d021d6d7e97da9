"""Training-time augmentation: random crops, SpecAugment masks and mixup.

With ten clips per genre the networks can memorise every clip in a few epochs;
these are the cheap ways to show them a different view each time:

- a random 3-second crop of the whole clip (instead of a fixed grid of slices),
  normalised exactly as the front end normalises a segment, so the model never
  sees a feature distribution at training time that inference does not produce;
- SpecAugment-style masking of random mel bands and time spans;
- mixup: convex combinations of two crops and of their labels.
"""

from __future__ import annotations

import numpy as np
import torch


def crop(log_power: np.ndarray, start: int, frames: int, top_db: float) -> np.ndarray:
    """One normalised segment from a clip's unreferenced dB spectrogram.

    Equals ``normalise(to_db(power[:, start:start+frames]))`` of the front end: dB
    relative to the crop's own maximum, floored ``top_db`` below it, then zero mean
    and unit variance. A clip shorter than a segment is padded with the floor value.
    """
    window = log_power[:, start : start + frames]
    if window.shape[1] < frames:
        floor = window.min() if window.size else 0.0
        window = np.pad(window, ((0, 0), (0, frames - window.shape[1])), constant_values=floor)
    db = window - window.max()
    db = np.maximum(db, -top_db)
    centred = db - db.mean()
    std = float(centred.std())
    return (centred / std if std > 1e-6 else centred).astype(np.float32)


def random_crops(
    clips: list[np.ndarray], counts: int, frames: int, top_db: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``counts`` random crops from every clip: (len(clips)*counts, n_mels, frames) and owners."""
    out = []
    owner = []
    for i, clip in enumerate(clips):
        span = max(1, clip.shape[1] - frames + 1)
        for start in rng.integers(0, span, size=counts):
            out.append(crop(clip, int(start), frames, top_db))
            owner.append(i)
    return np.stack(out), np.array(owner, dtype=np.int64)


def spec_augment(
    x: torch.Tensor,
    generator: torch.Generator,
    freq_masks: int = 2,
    freq_width: int = 16,
    time_masks: int = 2,
    time_width: int = 20,
) -> torch.Tensor:
    """Zero random mel bands and time spans of a (batch, 1, mels, frames) tensor.

    Zero is the mean of a normalised segment, so a mask removes information without
    adding a value the network never sees otherwise.
    """
    batch, _, n_mels, n_frames = x.shape
    keep = torch.ones(batch, 1, n_mels, n_frames, dtype=x.dtype)
    mels = torch.arange(n_mels).view(1, -1, 1)
    steps = torch.arange(n_frames).view(1, 1, -1)
    for count, width, size, axis in (
        (freq_masks, freq_width, n_mels, mels),
        (time_masks, time_width, n_frames, steps),
    ):
        for _ in range(count):
            w = torch.randint(0, width + 1, (batch, 1, 1), generator=generator)
            start = (torch.rand(batch, 1, 1, generator=generator) * (size - w + 1)).long()
            masked = (axis >= start) & (axis < start + w)
            keep[:, 0] *= (~masked).to(x.dtype)
    return x * keep


def mixup(
    x: torch.Tensor, targets: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend each example with a random partner; ``targets`` are one-hot/soft labels."""
    if alpha <= 0:
        return x, targets
    lam = torch.distributions.Beta(alpha, alpha).sample((x.shape[0],))
    lam = torch.maximum(lam, 1 - lam)  # keep the original example dominant
    perm = torch.randperm(x.shape[0], generator=generator)
    lx = lam.view(-1, 1, 1, 1).to(x.dtype)
    ly = lam.view(-1, 1).to(targets.dtype)
    return lx * x + (1 - lx) * x[perm], ly * targets + (1 - ly) * targets[perm]
