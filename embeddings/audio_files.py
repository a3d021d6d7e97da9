"""The audio layer's old address: everything here now lives in :mod:`embeddings.audio`.

Kept as names only, no code, for the callers and tests that still import from here;
new code imports :mod:`embeddings.audio`.
"""

from embeddings.audio import (
    BLOCK_FRAMES as READ_FRAMES,
)
from embeddings.audio import (
    MAX_CHANNELS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    NO_FINITE_SAMPLES,
    SAMPLE_BOUND,
    SILENCE_PEAK,
    AudioInfo,
    DecodeError,
    SampleCleaning,
    audio_info,
    check_header,
    downmix,
    failure_reason,
    open_pyav_audio,
    pyav_duration,
    read_audio,
    short_reason,
    silence_reason,
    silent_peak,
    sndfile_name,
    unreadable,
)

__all__ = [
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "NO_FINITE_SAMPLES",
    "READ_FRAMES",
    "SAMPLE_BOUND",
    "SILENCE_PEAK",
    "AudioInfo",
    "DecodeError",
    "SampleCleaning",
    "audio_info",
    "check_header",
    "downmix",
    "failure_reason",
    "open_pyav_audio",
    "pyav_duration",
    "read_audio",
    "short_reason",
    "silence_reason",
    "silent_peak",
    "sndfile_name",
    "unreadable",
]
