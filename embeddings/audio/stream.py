"""The one way every reader opens audio: a stream of blocks at a rate and channel count.

Ingest, uploaded clips, stems, training, pretraining, the similarity evaluation and
the dataset report all decode through :func:`open_audio` (or :func:`read_audio` /
:func:`decode_all` on top of it), so a track's samples are the same whichever of
them reads it, and a bad file fails or is repaired the same way everywhere:

- a header declaring an impossible rate or channel count is refused before anything
  is allocated (:func:`~embeddings.audio.checks.check_header`);
- non-finite and huge samples are repaired and counted
  (:class:`~embeddings.audio.checks.SampleCleaning`);
- a file damaged or cut off part-way keeps what decoded, and the stream records why
  decoding stopped (:attr:`DecodedStream.stopped_early`); the caller decides whether
  a part is enough (ingest indexes it with a warning, stems refuse it);
- a file neither decoder can open raises :class:`DecodeError` naming both reasons.

Which decoder reads which format was decided by measurement: see
:data:`DECODER_BY_EXTENSION`. Whatever the preferred decoder cannot open, or opens
but gets no audio out of, is tried with the other, so a file that decoded before
still does.

It stays one module of about 400 lines on purpose: the block stream, the fallback
between the two decoders and the damage policy are one contract, and split apart
each half would have to re-state the other's rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embeddings.audio.channels import convert_channels, downmix
from embeddings.audio.checks import NO_FINITE_SAMPLES, HeaderRefused, SampleCleaning
from embeddings.audio.errors import DecodeError, short_reason, unreadable
from embeddings.audio.ffmpeg import GRAPH_FRAMES, probe
from embeddings.audio.resample import Resampler
from embeddings.audio.sndfile import BLOCK_FRAMES, open_sndfile

# The decoders, by what does the work (bench/decode.py measures each per format).
LIBSNDFILE = "libsndfile"  # libsndfile decodes; numpy downmix; soxr HQ on 64k-frame blocks
LIBSNDFILE_OPUS_NATIVE = "libsndfile-opus-native"  # the same, Opus decoded at 24 kHz, not 48
FFMPEG = "ffmpeg"  # FFmpeg decodes, downmixes and resamples (swresample) in one filter graph
FFMPEG_SOXR = "ffmpeg+soxr"  # FFmpeg decodes and downmixes in a graph; soxr HQ resamples
DECODERS = (LIBSNDFILE, LIBSNDFILE_OPUS_NATIVE, FFMPEG, FFMPEG_SOXR)
_LIBSNDFILE_FAMILY = frozenset({LIBSNDFILE, LIBSNDFILE_OPUS_NATIVE})

# The fastest decoder per format, measured by bench/decode.py (docs/benchmarks.md,
# "Decoding per format": 8 synthetic 60 s stereo 44.1 kHz tracks per format, decoded
# to 22,050 Hz mono, audio-minutes per CPU-minute, median of the repeats, on a shared
# 2-core AMD EPYC), and accepted only where the shipped model's track embeddings of
# the new and the old decode of 108 files agree (cosine >= 0.99, the same top genre
# for >= 99 %; bench/decode.py --equivalence).
DECODER_BY_EXTENSION: dict[str, str] = {
    # Vorbis: FFmpeg's decoder + soxr 831 vs libsndfile (libvorbis) + soxr 489, and
    # 749 with FFmpeg's resampler. Embedding cosine to before >= 0.99999.
    ".ogg": FFMPEG_SOXR,
    ".oga": FFMPEG_SOXR,
    # Opus: FFmpeg's decoder + its resampler 425 vs + soxr 395 vs libsndfile (libopus)
    # 138, which decoding natively at 24 kHz does not speed up (140): libopus'
    # decoding, not the resampling, is the cost. Cosine >= 0.99984 (median 0.999993);
    # top genre the same for 107 of 108, the other a tie before (0.2534 each).
    ".opus": FFMPEG,
    # AAC: FFmpeg only; its resampler 929 vs soxr 878 (PyAV fed frame by frame
    # before: 402), the same samples as before but for the downmix (the mean now,
    # FFmpeg's own mono was 3 dB louder): cosine to before >= 0.99999.
    ".m4a": FFMPEG,
    ".aac": FFMPEG,
    ".mp4": FFMPEG,
    # MP3 stays on libsndfile (mpg123): 855 vs FFmpeg's 823 and 804 with soxr, within
    # the machine's noise of each other. (Its samples change only where soundfile's
    # seek around every read glitched them, see embeddings/audio/sndfile.py: cosine
    # to before >= 0.999998.)
    # FLAC (libsndfile 732 vs FFmpeg 621) and WAV, AIFF and AU (libsndfile 2,120 vs
    # FFmpeg 653) stay on libsndfile too: the default below.
}
# Frames per block when seeking to an analysis window (a few seconds): with 64k-frame
# blocks a 3-s window at 44.1 kHz decoded and resampled 4.5 s (three blocks) for
# 3.25 s used; 8k-frame blocks waste at most 0.2 s, for a few more calls into C.
SEEK_BLOCK_FRAMES = 1 << 13
DEFAULT_DECODER = LIBSNDFILE  # any other extension: libsndfile first, as before
FFMPEG_FALLBACK = DECODER_BY_EXTENSION[".m4a"]  # what reads a file libsndfile cannot open


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header declares, and which decoder read it."""

    sample_rate: int  # the rate the decoder decodes at (the file's own)
    channels: int  # the file's own
    duration_s: float | None  # missing or wrong in some containers
    decoder: str


@dataclass
class DecodedStream:
    """An open file: its header, and blocks of float32 at ``sample_rate``.

    Blocks are 1-D for one channel, (frames, channels) otherwise. The counters are
    filled as the blocks are consumed.
    """

    info: AudioInfo
    blocks: Iterator[np.ndarray]
    sample_rate: int = 0  # of the blocks
    channels: int = 1  # of the blocks
    # Source frames actually decoded, and why decoding stopped early (truncated or
    # damaged file), if it did.
    frames_decoded: int = 0
    stopped_early: str | None = None
    problem: Exception | None = None  # the decoder's own error behind ``stopped_early``
    # Non-finite and huge samples repaired on the way out of the decoder.
    cleaning: SampleCleaning = field(default_factory=SampleCleaning)

    @property
    def decoded_seconds(self) -> float:
        return self.frames_decoded / self.info.sample_rate if self.info.sample_rate else 0.0

    def stop(self, exc: Exception) -> None:
        """Record that decoding stopped on ``exc``, keeping what came before."""
        self.problem = exc
        self.stopped_early = f"decoding stopped at {self.decoded_seconds:.1f} s: {exc}"


def decoder_for(path: Path | str) -> str:
    """The decoder chosen for ``path``'s format (:data:`DECODER_BY_EXTENSION`)."""
    return DECODER_BY_EXTENSION.get(Path(path).suffix.lower(), DEFAULT_DECODER)


def _other(decoder: str) -> str:
    return FFMPEG_FALLBACK if decoder in _LIBSNDFILE_FAMILY else LIBSNDFILE


def _check_not_empty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise DecodeError("empty file (0 bytes)")


def open_audio(
    path: Path,
    sample_rate: int | None,
    channels: int = 1,
    *,
    start_s: float = 0.0,
    seek: bool = False,
    decoder: str | None = None,
) -> DecodedStream:
    """Stream ``path`` decoded to ``sample_rate`` (None: the file's own) and ``channels``.

    One channel is the mean of the file's; more follow Demucs' rule (see
    :func:`~embeddings.audio.channels.convert_channels`). ``start_s`` starts the
    blocks there: libsndfile seeks, FFmpeg decodes from the start and drops what
    comes before (so an excerpt is exactly that span of the whole decode) unless
    ``seek``: then FFmpeg seeks too and drops up to ``start_s`` by the decoded
    frames' timestamps (an analysis window of a long track: the same samples but
    for a few at the start, at the cost of a seek rather than of decoding
    everything before; blocks are then :data:`SEEK_BLOCK_FRAMES` source frames, since
    a window is short). ``decoder`` overrides the per-format choice (benchmarks,
    equivalence checks).
    Raises :class:`DecodeError` (both decoders' reasons when neither opens it) or
    OSError when the file cannot be read at all.
    """
    path = Path(path)
    _check_not_empty(path)
    first = decoder or decoder_for(path)
    if first not in DECODERS:
        raise ValueError(f"unknown decoder {first!r}; one of {', '.join(DECODERS)}")
    failures: dict[bool, Exception] = {}
    fallback: DecodedStream | None = None
    for name in (first, _other(first)):
        try:
            stream = _open_with(name, path, sample_rate, channels, start_s, seek)
        except HeaderRefused:
            if fallback is not None:
                fallback.blocks.close()
            raise
        except Exception as exc:
            failures[name in _LIBSNDFILE_FAMILY] = exc
            continue
        _prime(stream)
        if stream.frames_decoded > 0:
            if fallback is not None:
                fallback.blocks.close()
            return stream
        if fallback is not None:  # neither decoded anything: the first one's reasons stand
            stream.blocks.close()
            return fallback
        fallback = stream  # opened, but nothing decoded: see whether the other does better
    if fallback is not None:
        return fallback
    raise unreadable(failures[True], failures[False], path)


def _open_with(
    name: str, path: Path, sample_rate: int | None, channels: int, start_s: float, seek: bool
) -> DecodedStream:
    block = SEEK_BLOCK_FRAMES if seek else None
    if name in _LIBSNDFILE_FAMILY:
        native = name == LIBSNDFILE_OPUS_NATIVE
        return _sndfile_stream(path, sample_rate, channels, start_s, native, block)
    in_graph = name == FFMPEG
    return _ffmpeg_stream(path, sample_rate, channels, start_s, in_graph, seek, block)


def _prime(stream: DecodedStream) -> None:
    """Decode the first block now, so a decoder that gets nothing out can be swapped."""
    blocks = stream.blocks
    first = next(blocks, None)

    def resumed() -> Iterator[np.ndarray]:
        try:
            if first is not None:
                yield first
            yield from blocks
        finally:
            blocks.close()

    stream.blocks = resumed()


def _to_channels(block: np.ndarray, channels: int) -> np.ndarray:
    """(frames, file channels) -> 1-D for one channel, (frames, channels) otherwise."""
    return downmix(block) if channels == 1 else convert_channels(block, channels)


def _empty(channels: int) -> np.ndarray:
    return np.zeros(0 if channels == 1 else (0, channels), dtype=np.float32)


def _sndfile_stream(
    path: Path,
    sample_rate: int | None,
    channels: int,
    start_s: float,
    opus_native: bool,
    block: int | None = None,
) -> DecodedStream:
    source = open_sndfile(path, opus_rate_for=sample_rate if opus_native else None)
    rate = sample_rate or source.sample_rate
    duration = source.frames / source.sample_rate if source.frames else None
    info = AudioInfo(source.sample_rate, source.channels, duration, source.decoder)
    stream = DecodedStream(info=info, blocks=iter(()), sample_rate=rate, channels=channels)
    if start_s:
        try:
            source.seek(int(round(start_s * source.sample_rate)))
        except BaseException:
            source.close()
            raise

    read_size = block or BLOCK_FRAMES

    def blocks() -> Iterator[np.ndarray]:
        resample = Resampler(source.sample_rate, rate, channels)
        try:
            while True:
                frames, problem = source.read(read_size)
                if len(frames):
                    stream.frames_decoded += len(frames)
                    out = resample(_to_channels(stream.cleaning.clean(frames), channels))
                    if len(out):
                        yield out
                if problem is not None:  # a damaged frame deep inside the file
                    stream.stop(problem)
                    break
                if len(frames) == 0:
                    break
            tail = resample(_empty(channels), last=True)
            if len(tail):
                yield tail
        finally:
            source.close()

    stream.blocks = blocks()
    return stream


def _ffmpeg_stream(
    path: Path,
    sample_rate: int | None,
    channels: int,
    start_s: float,
    in_graph: bool,
    seek: bool = False,
    frame_samples: int | None = None,
) -> DecodedStream:
    source = probe(path)
    rate = sample_rate or source.sample_rate
    info = AudioInfo(source.sample_rate, source.channels, source.duration_s, source.decoder)
    stream = DecodedStream(info=info, blocks=iter(()), sample_rate=rate, channels=channels)

    def resampled() -> Iterator[np.ndarray]:
        # In the graph, FFmpeg resamples and only the output is seen: the source
        # frames are counted back from it. Otherwise soxr resamples the graph's
        # blocks of source frames, cleaned first (as libsndfile's are).
        resample = None if in_graph else Resampler(source.sample_rate, rate, channels)
        delivered = 0
        seek_s, frames = (start_s if seek else 0.0), frame_samples or GRAPH_FRAMES
        decoded = source.blocks(channels, rate if in_graph else None, seek_s, frames)
        try:
            try:
                for block in decoded:
                    block = block.reshape(-1) if channels == 1 else block
                    if resample is None:
                        delivered += len(block)
                        stream.frames_decoded = round(delivered * source.sample_rate / rate)
                        out = stream.cleaning.clean(block)
                    else:
                        stream.frames_decoded += len(block)
                        out = resample(stream.cleaning.clean(block))
                    if len(out):
                        yield out
            except Exception as exc:  # damaged part-way: keep what decoded
                stream.stop(exc)
            if resample is not None:
                tail = resample(_empty(channels), last=True)
                if len(tail):
                    yield tail
        finally:
            decoded.close()

    stream.blocks = _skip_samples(resampled(), 0 if seek else int(round(start_s * rate)))
    return stream


def _skip_samples(blocks: Iterator[np.ndarray], count: int) -> Iterator[np.ndarray]:
    """``blocks`` without their first ``count`` samples (frames)."""
    try:
        for block in blocks:
            if count >= len(block):
                count -= len(block)
                continue
            yield block[count:]
            count = 0
    finally:
        blocks.close()


def decode_all(path: Path, target_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Whole-file mono decode for short clips (uploads, tests); bounded by ``max_seconds``.

    Memory stays bounded by construction: reading stops at the first block past
    ``max_seconds``, and :func:`~embeddings.audio.checks.check_header` caps how much
    one block can grow in the resampler (at most target rate / 4,000 Hz times its
    source frames). Raises :class:`DecodeError` when every sample read was NaN or
    infinite.
    """
    stream = open_audio(path, target_rate)
    limit = int(max_seconds * target_rate) if max_seconds else None
    audio = _collect(stream, limit)
    if stream.cleaning.none_finite:
        raise DecodeError(NO_FINITE_SAMPLES)
    return audio


def _collect(stream: DecodedStream, limit: int | None) -> np.ndarray:
    parts: list[np.ndarray] = []
    total = 0
    try:
        for block in stream.blocks:
            parts.append(block)
            total += len(block)
            if limit is not None and total >= limit:
                break
    finally:
        stream.blocks.close()
    audio = np.concatenate(parts) if parts else _empty(stream.channels)
    return audio[:limit] if limit is not None else audio


def read_audio(
    path: Path, sample_rate: int, start_s: float = 0.0, max_seconds: float | None = None
) -> tuple[np.ndarray, AudioInfo]:
    """Mono float32 at ``sample_rate`` from ``start_s``, at most ``max_seconds``; and the header.

    libsndfile seeks to the start, so an excerpt of a long file costs only the
    excerpt; FFmpeg decodes from the beginning and stops once it has enough. A file
    damaged part-way keeps what decoded before the damage, as ingest does; one
    that yields nothing raises :class:`DecodeError`.
    """
    stream = open_audio(path, sample_rate, start_s=start_s)
    limit = int(round(max_seconds * sample_rate)) if max_seconds else None
    audio = _collect(stream, limit)
    if stream.frames_decoded == 0:
        reason = f": {short_reason(stream.problem)}" if stream.problem else ""
        raise DecodeError(f"no audio frames could be decoded{reason}")
    if stream.cleaning.none_finite:
        raise DecodeError(NO_FINITE_SAMPLES)
    return audio, stream.info


def audio_info(path: Path) -> AudioInfo:
    """The header of ``path`` from its format's decoder, else the other; raises DecodeError."""
    path = Path(path)
    _check_not_empty(path)
    failures: dict[bool, Exception] = {}
    first = decoder_for(path)
    for name in (first, _other(first)):
        try:
            if name in _LIBSNDFILE_FAMILY:
                source = open_sndfile(path)
                source.close()
                duration = source.frames / source.sample_rate if source.frames else None
                return AudioInfo(source.sample_rate, source.channels, duration, source.decoder)
            header = probe(path)
            return AudioInfo(header.sample_rate, header.channels, header.duration_s, header.decoder)
        except HeaderRefused:
            raise
        except Exception as exc:
            failures[name in _LIBSNDFILE_FAMILY] = exc
    raise unreadable(failures[True], failures[False], path)
