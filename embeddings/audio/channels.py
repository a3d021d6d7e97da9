"""One rule for turning a file's channels into the channels a reader asks for.

The genre model hears the mean of every channel; Demucs wants two. Both decoders
follow the same rule (here for libsndfile's blocks, as an FFmpeg ``pan`` filter for
FFmpeg's), so a 5.1 file is mixed the same whichever decoder reads its format.
"""

from __future__ import annotations

import numpy as np

from embeddings.audio.errors import DecodeError


def downmix(block: np.ndarray) -> np.ndarray:
    """Average the channels.

    A matrix-vector product rather than ``mean(axis=1)``: numpy reduces a
    (frames, 2) block across its short axis one frame at a time, which made the
    downmix cost as much as decoding the MP3 itself (bench/ingest.py).
    """
    if block.ndim == 1:
        return block.astype(np.float32, copy=False)
    channels = block.shape[1]
    if channels == 1:
        return np.ascontiguousarray(block[:, 0], dtype=np.float32)
    weights = np.full(channels, 1.0 / channels, dtype=np.float32)
    return block.astype(np.float32, copy=False) @ weights


def convert_channels(block: np.ndarray, channels: int) -> np.ndarray:
    """Demucs' rule: mono is duplicated, extra channels dropped, to-mono is the mean."""
    have = block.shape[1]
    if have == channels:
        return block
    if channels == 1:
        return downmix(block)[:, None]
    if have == 1:
        return np.repeat(block, channels, axis=1)
    if have > channels:
        return block[:, :channels]
    raise DecodeError(f"cannot make {channels} channels out of {have}")


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")


def pan_filter(have: int, channels: int) -> str | None:
    """:func:`convert_channels` as arguments of FFmpeg's ``pan`` filter; None if nothing to do."""
    if have == channels:
        return None
    if channels == 1:
        mean = "+".join(f"{1.0 / have!r}*c{i}" for i in range(have))
        return f"mono|c0={mean}"
    if have == 1:
        return _layout(channels) + "|" + "|".join(f"c{i}=c0" for i in range(channels))
    if have > channels:
        return _layout(channels) + "|" + "|".join(f"c{i}=c{i}" for i in range(channels))
    raise DecodeError(f"cannot make {channels} channels out of {have}")
