"""The one streaming resampler: soxr at high quality on whole decoder blocks.

soxr is fed blocks of 64k source frames, so its C code does the work and Python is
called once per block, not once per codec frame.
"""

from __future__ import annotations

import numpy as np
import soxr


class Resampler:
    """Streaming resampler for (frames,) or (frames, channels) blocks; a no-op at equal rates."""

    def __init__(self, source_rate: int, target_rate: int, channels: int = 1) -> None:
        self.passthrough = source_rate == target_rate
        self.stream = (
            None
            if self.passthrough
            else soxr.ResampleStream(
                source_rate, target_rate, channels, dtype="float32", quality="HQ"
            )
        )

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if self.passthrough:
            return block
        return self.stream.resample_chunk(np.ascontiguousarray(block), last=last)
