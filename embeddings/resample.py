"""One anti-aliasing filter for every file, whatever its sample rate or decoder.

A library is mostly 44.1 and 48 kHz audio, which reaches the model at 22,050 Hz
through soxr's anti-aliasing filter: flat to about 10.2 kHz, -1 dB at 10.4 kHz,
-30 dB at 10.8 kHz. A file recorded at 22,050 Hz (GTZAN's clips, which the genre
model learns from) needs no resampling and used to keep its last kilohertz, and
M4A went through FFmpeg's resampler, whose filter is another. The networks hear
that band: the shipped model gave a 44.1 kHz FLAC copy of a clip it was trained on
another genre for 12 clips in 100 (``bench/band_limit.py``). So every path
resamples with this module's soxr filter, and a file already at the target rate
goes up to twice the rate and back down, which puts it through the same filter a
44.1 kHz file gets: training, evaluation and ingest see one kind of spectrogram.
"""

from __future__ import annotations

import numpy as np
import soxr

QUALITY = "HQ"  # the downsampling filter every file goes through
UPSAMPLE_QUALITY = "VHQ"  # only for files already at the target rate; flat to ~11 kHz


class Resampler:
    """Streaming mono resampler: feed blocks, then one call with ``last=True``."""

    def __init__(self, source_rate: int, target_rate: int) -> None:
        if source_rate == target_rate:  # as if it had come from twice the rate
            self.stages = [
                soxr.ResampleStream(source_rate, 2 * target_rate, 1, "float32", UPSAMPLE_QUALITY),
                soxr.ResampleStream(2 * target_rate, target_rate, 1, "float32", QUALITY),
            ]
        else:
            self.stages = [soxr.ResampleStream(source_rate, target_rate, 1, "float32", QUALITY)]

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        out = np.ascontiguousarray(block, dtype=np.float32)
        for stage in self.stages:
            out = stage.resample_chunk(out, last=last)
        return out


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Whole-array version of :class:`Resampler`, sample for sample the same output."""
    return Resampler(source_rate, target_rate)(audio, last=True).astype(np.float32, copy=False)
