"""Streaming decode for ingest: the audio layer's :func:`~embeddings.audio.open_audio`.

There is no decoder here any more: ingest, uploads, stems and training all decode
through :mod:`embeddings.audio`. These names stay for the modules and tests that
import them from ingest.
"""

from embeddings.audio import (
    BLOCK_FRAMES,
    DecodedStream,
    DecodeError,
    decode_all,
    downmix,
    open_audio,
    open_pyav_audio,
)
from embeddings.audio import (
    AudioInfo as StreamInfo,
)

__all__ = [
    "BLOCK_FRAMES",
    "DecodeError",
    "DecodedStream",
    "StreamInfo",
    "decode_all",
    "downmix",
    "open_audio",
    "open_pyav_audio",
]
