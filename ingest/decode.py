"""Streaming decode to mono at the model's sample rate, in bounded memory.

libsndfile (soundfile) reads WAV, FLAC, OGG/Vorbis, Opus, MP3 and AIFF; anything it
cannot open (M4A/AAC, odd containers) goes through FFmpeg via PyAV. Both paths
yield blocks of mono float32 audio already resampled, so an hour-long file never
sits in memory whole: only one block and the resampler's state do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from embeddings.audio_files import (
    NO_FINITE_SAMPLES,
    DecodeError,
    SampleCleaning,
    check_header,
    downmix,
    open_pyav_audio,
    pyav_duration,
    resampled_mono,
    sndfile_name,
    unreadable,
)

BLOCK_FRAMES = 1 << 16  # source frames per read: ~1.5 s at 44.1 kHz


@dataclass
class StreamInfo:
    sample_rate: int
    channels: int
    duration_s: float | None  # as declared by the container; may be missing or wrong
    decoder: str


@dataclass
class DecodedStream:
    info: StreamInfo
    blocks: Iterator[np.ndarray]  # mono float32 at the target rate
    # Filled as decoding goes: source frames actually decoded, and a message if
    # decoding stopped early (truncated or damaged file).
    frames_decoded: int = 0
    stopped_early: str | None = None
    # Non-finite and huge samples repaired on the way out of the decoder.
    cleaning: SampleCleaning = field(default_factory=SampleCleaning)

    @property
    def decoded_seconds(self) -> float:
        return self.frames_decoded / self.info.sample_rate if self.info.sample_rate else 0.0


class _Resampler:
    def __init__(self, source_rate: int, target_rate: int) -> None:
        self.passthrough = source_rate == target_rate
        self.stream = (
            None
            if self.passthrough
            else soxr.ResampleStream(source_rate, target_rate, 1, dtype="float32", quality="HQ")
        )

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if self.passthrough:
            return block
        return self.stream.resample_chunk(np.ascontiguousarray(block), last=last)


def _soundfile_stream(path: Path, target_rate: int) -> DecodedStream:
    handle = sf.SoundFile(sndfile_name(path))  # raises sf.LibsndfileError / RuntimeError
    try:
        check_header(handle.samplerate, handle.channels)  # before any buffer is sized by it
    except DecodeError:
        handle.close()
        raise
    frames = handle.frames if handle.frames and handle.frames > 0 else None
    info = StreamInfo(
        sample_rate=handle.samplerate,
        channels=handle.channels,
        duration_s=frames / handle.samplerate if frames else None,
        decoder=f"libsndfile/{handle.format.lower()}",
    )
    stream = DecodedStream(info=info, blocks=iter(()))

    def blocks() -> Iterator[np.ndarray]:
        resample = _Resampler(handle.samplerate, target_rate)
        try:
            while True:
                try:
                    block = handle.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                except Exception as exc:  # a damaged frame deep inside the file
                    stream.stopped_early = (
                        f"decoding stopped at {stream.decoded_seconds:.1f} s: {exc}"
                    )
                    break
                if len(block) == 0:
                    break
                stream.frames_decoded += len(block)
                out = resample(downmix(stream.cleaning.clean(block)))
                if len(out):
                    yield out
            tail = resample(np.zeros(0, dtype=np.float32), last=True)
            if len(tail):
                yield tail
        finally:
            handle.close()

    stream.blocks = blocks()
    return stream


def _pyav_stream(path: Path, target_rate: int) -> DecodedStream:
    import av

    container, audio, rate, channels = open_pyav_audio(path)
    ctx = audio.codec_context
    info = StreamInfo(rate, channels, pyav_duration(container, audio), f"ffmpeg/{ctx.name}")
    stream = DecodedStream(info=info, blocks=iter(()))

    def blocks() -> Iterator[np.ndarray]:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=target_rate)
        try:
            try:
                for frame in container.decode(audio):
                    stream.frames_decoded += frame.samples
                    for out in resampler.resample(frame):
                        yield stream.cleaning.clean(resampled_mono(out))
            except Exception as exc:
                stream.stopped_early = f"decoding stopped at {stream.decoded_seconds:.1f} s: {exc}"
            for out in resampler.resample(None):
                yield stream.cleaning.clean(resampled_mono(out))
        finally:
            container.close()

    stream.blocks = blocks()
    return stream


def open_audio(path: Path, target_rate: int) -> DecodedStream:
    """Open ``path`` for streaming decode; raises :class:`DecodeError` with both reasons."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise DecodeError("empty file (0 bytes)")
    try:
        return _soundfile_stream(path, target_rate)
    except DecodeError:
        raise
    except Exception as sf_exc:
        try:
            return _pyav_stream(path, target_rate)
        except DecodeError as av_exc:
            raise unreadable(sf_exc, av_exc, path) from None


def decode_all(path: Path, target_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Whole-file decode for short clips (uploads, tests); bounded by ``max_seconds``.

    Memory stays bounded by construction: reading stops at the first block past
    ``max_seconds``, and :func:`check_header` caps how much one block can grow in
    the resampler (at most target rate / 4,000 Hz times its source frames).
    Raises :class:`DecodeError` when every sample read was NaN or infinite.
    """
    stream = open_audio(path, target_rate)
    parts: list[np.ndarray] = []
    total = 0
    limit = int(max_seconds * target_rate) if max_seconds else None
    for block in stream.blocks:
        parts.append(block)
        total += len(block)
        if limit is not None and total >= limit:
            stream.blocks.close()
            break
    if stream.cleaning.none_finite:
        raise DecodeError(NO_FINITE_SAMPLES)
    audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return audio[:limit] if limit is not None else audio
