"""Remixing cached stems with per-stem gains (the "remix station")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

MAX_REMIX_SECONDS = 600.0


def mix_stems(
    stems: dict[str, Path], gains: dict[str, float], max_seconds: float = MAX_REMIX_SECONDS
) -> tuple[int, np.ndarray]:
    """Sum the stems, each scaled by its gain (default 1), as (rate, frames x channels).

    Stems of one set share rate, channel count and length; the mix is limited to
    ``max_seconds`` and scaled down if it would clip.
    """
    if not stems:
        raise ValueError("no stems to mix")
    mix: np.ndarray | None = None
    rate = None
    for name, path in sorted(stems.items()):
        gain = float(gains.get(name, 1.0))
        with sf.SoundFile(str(path)) as fh:
            if rate is None:
                rate = fh.samplerate
            elif fh.samplerate != rate:
                raise ValueError(f"stem {name} is at {fh.samplerate} Hz, the others at {rate}")
            data = fh.read(int(max_seconds * fh.samplerate), dtype="float32", always_2d=True)
        if gain == 0.0:
            data = np.zeros_like(data)
        if mix is None:
            mix = data * gain
        else:
            n = min(len(mix), len(data))
            channels = max(mix.shape[1], data.shape[1])
            mix = _channels(mix[:n], channels) + _channels(data[:n], channels) * gain
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    if peak > 1.0:
        mix = mix / peak
    return int(rate), mix.astype(np.float32)


def _channels(data: np.ndarray, channels: int) -> np.ndarray:
    return data if data.shape[1] == channels else np.repeat(data[:, :1], channels, axis=1)
