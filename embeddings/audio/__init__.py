"""The audio layer: every reader of audio files opens them here.

Ingest, uploaded clips, stems, training, pretraining, the similarity evaluation and
the dataset report used to carry four decoders between them, with two policies for
a damaged file and two lists of extensions (training skipped the .aac and .mp4
files ingest indexed). They now share, from the bottom layer so that ``embeddings``
needs nothing above it:

- :mod:`~embeddings.audio.files`: the extensions and the one file walk;
- :mod:`~embeddings.audio.stream`: :func:`open_audio`, one streaming decode to a
  given rate and channel count, with the per-format choice of decoder
  (:data:`DECODER_BY_EXTENSION`), and :func:`read_audio`, :func:`decode_all` and
  :func:`audio_info` on top of it;
- :mod:`~embeddings.audio.checks`: header limits, sample cleaning, silence;
- :mod:`~embeddings.audio.channels`: the one downmix and channel rule;
- :mod:`~embeddings.audio.errors`: :class:`DecodeError` and the reasons' wording;
- :mod:`~embeddings.audio.sndfile` and :mod:`~embeddings.audio.ffmpeg`: the two
  decoders; :mod:`~embeddings.audio.resample`: soxr.
"""

from embeddings.audio.channels import convert_channels, downmix, pan_filter
from embeddings.audio.checks import (
    MAX_CHANNELS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    NO_FINITE_SAMPLES,
    SAMPLE_BOUND,
    SILENCE_PEAK,
    HeaderRefused,
    SampleCleaning,
    check_header,
    silence_reason,
    silent_peak,
)
from embeddings.audio.errors import (
    DecodeError,
    failure_reason,
    short_reason,
    sndfile_name,
    unreadable,
)
from embeddings.audio.ffmpeg import open_pyav_audio, pyav_duration
from embeddings.audio.files import AUDIO_EXTENSIONS, audio_files_in, is_audio_name, iter_audio_files
from embeddings.audio.resample import Resampler
from embeddings.audio.sndfile import BLOCK_FRAMES
from embeddings.audio.stream import (
    DECODER_BY_EXTENSION,
    DECODERS,
    FFMPEG,
    FFMPEG_SOXR,
    LIBSNDFILE,
    LIBSNDFILE_OPUS_NATIVE,
    AudioInfo,
    DecodedStream,
    audio_info,
    decode_all,
    decoder_for,
    open_audio,
    read_audio,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "BLOCK_FRAMES",
    "DECODERS",
    "DECODER_BY_EXTENSION",
    "FFMPEG",
    "FFMPEG_SOXR",
    "LIBSNDFILE",
    "LIBSNDFILE_OPUS_NATIVE",
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "NO_FINITE_SAMPLES",
    "SAMPLE_BOUND",
    "SILENCE_PEAK",
    "AudioInfo",
    "DecodeError",
    "DecodedStream",
    "HeaderRefused",
    "Resampler",
    "SampleCleaning",
    "audio_files_in",
    "audio_info",
    "check_header",
    "convert_channels",
    "decode_all",
    "decoder_for",
    "downmix",
    "failure_reason",
    "is_audio_name",
    "iter_audio_files",
    "open_audio",
    "open_pyav_audio",
    "pan_filter",
    "pyav_duration",
    "read_audio",
    "short_reason",
    "silence_reason",
    "silent_peak",
    "sndfile_name",
    "unreadable",
]
