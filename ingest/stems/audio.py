"""Streaming multichannel audio I/O for stem separation.

``ingest.decode`` yields mono for the genre model; Demucs wants the stereo image,
and the stems must come back at the track's own sample rate. These helpers read
blocks of (frames, channels) audio at the source rate, resample block by block,
and write blocks straight to the stem files, so no whole track is ever in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ingest.decode import BLOCK_FRAMES, DecodeError, downmix, open_pyav_audio

# Output formats: libsndfile container and subtype. FLAC is lossless at 24 bits; WAV
# keeps the model's float32 output exactly; MP3 is for small files to share.
FORMATS: dict[str, tuple[str, str | None]] = {
    "flac": ("FLAC", "PCM_24"),
    "wav": ("WAV", "FLOAT"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
MP3_MAX_RATE = 48_000


@dataclass
class AudioBlocks:
    """An open file: its source properties and a generator of (frames, channels) blocks."""

    sample_rate: int
    source_channels: int
    frames: int | None  # as declared by the container; may be missing or wrong
    blocks: Iterator[np.ndarray]  # float32 (n, channels) at ``sample_rate``


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


def _soundfile_blocks(path: Path, channels: int) -> AudioBlocks:
    handle = sf.SoundFile(str(path))
    if handle.samplerate <= 0 or handle.channels <= 0:
        handle.close()
        raise DecodeError("file declares no sample rate or channels")

    def blocks() -> Iterator[np.ndarray]:
        try:
            while True:
                try:
                    block = handle.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                except Exception as exc:
                    raise DecodeError(f"decoding stopped: {exc}") from None
                if len(block) == 0:
                    return
                yield convert_channels(block, channels)
        finally:
            handle.close()

    frames = handle.frames if handle.frames and handle.frames > 0 else None
    return AudioBlocks(handle.samplerate, handle.channels, frames, blocks())


def _pyav_blocks(path: Path, channels: int) -> AudioBlocks:
    import av  # FFmpeg, for what libsndfile cannot read (M4A/AAC, odd containers)

    container, stream, rate, source_channels = open_pyav_audio(path)
    frames = None
    if stream.duration is not None and stream.time_base is not None:
        frames = int(round(float(stream.duration * stream.time_base) * rate))
    layout = "mono" if channels == 1 else "stereo"
    if channels > 2:
        container.close()
        raise DecodeError(f"FFmpeg decoding to {channels} channels is not supported")

    def blocks() -> Iterator[np.ndarray]:
        resampler = av.AudioResampler(format="flt", layout=layout, rate=rate)
        try:
            try:
                for frame in container.decode(stream):
                    for out in resampler.resample(frame):
                        yield out.to_ndarray().reshape(-1, channels).astype(np.float32, copy=False)
            except Exception as exc:
                raise DecodeError(f"decoding stopped: {exc}") from None
            for out in resampler.resample(None):
                yield out.to_ndarray().reshape(-1, channels).astype(np.float32, copy=False)
        finally:
            container.close()

    return AudioBlocks(rate, source_channels, frames, blocks())


def open_blocks(path: Path, channels: int = 2) -> AudioBlocks:
    """Open ``path`` for streaming multichannel decode at its own sample rate."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise DecodeError("empty file (0 bytes)")
    try:
        return _soundfile_blocks(path, channels)
    except DecodeError:
        raise
    except Exception as sf_exc:
        try:
            return _pyav_blocks(path, channels)
        except DecodeError as av_exc:
            raise DecodeError(
                f"not a readable audio file (libsndfile: {sf_exc}; ffmpeg: {av_exc})"
            ) from None


class BlockResampler:
    """Streaming resampler for (frames, channels) blocks; a no-op at equal rates."""

    def __init__(self, source_rate: int, target_rate: int, channels: int) -> None:
        self.passthrough = source_rate == target_rate
        self.stream = (
            None
            if self.passthrough
            else soxr.ResampleStream(source_rate, target_rate, channels, dtype="float32")
        )

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if self.passthrough:
            return block
        return self.stream.resample_chunk(np.ascontiguousarray(block), last=last)


class StemFileWriter:
    """Writes blocks to several files at once and makes every file exactly ``frames`` long.

    The exact length is known only when decoding ends (containers may lie), while the
    output is written long before; so each write is cut at the limit once it is known,
    and :meth:`close` pads a short tail with silence.
    """

    def __init__(
        self, paths: dict[str, Path], sample_rate: int, channels: int, format: str
    ) -> None:
        container, subtype = FORMATS[format]
        if format == "mp3" and sample_rate > MP3_MAX_RATE:
            raise ValueError(
                f"MP3 stores at most {MP3_MAX_RATE} Hz and this track is {sample_rate} Hz: "
                "use --format flac or wav"
            )
        self.clip = subtype != "FLOAT"  # integer and lossy encodings wrap or distort past 1.0
        self.channels = channels
        self.written = 0
        self.limit: int | None = None
        self.files: dict[str, sf.SoundFile] = {}
        try:
            for name, path in paths.items():
                self.files[name] = sf.SoundFile(
                    str(path), "w", samplerate=sample_rate, channels=channels,
                    format=container, subtype=subtype,
                )  # fmt: skip
        except Exception:
            self.abort()
            raise

    def write(self, blocks: dict[str, np.ndarray]) -> None:
        """One block per file, all the same length, (frames, channels)."""
        n = len(next(iter(blocks.values())))
        if self.limit is not None:
            n = max(0, min(n, self.limit - self.written))
        if n == 0:
            return
        for name, handle in self.files.items():
            block = blocks[name][:n]
            if self.clip:
                block = np.clip(block, -1.0, 1.0)
            handle.write(np.ascontiguousarray(block))
        self.written += n

    def close(self) -> int:
        """Pad to the limit (if known), close every file; returns the frames written."""
        if self.limit is not None and self.written < self.limit:
            silence = np.zeros((self.limit - self.written, self.channels), dtype=np.float32)
            self.write({name: silence for name in self.files})
        for handle in self.files.values():
            handle.close()
        return self.written

    def abort(self) -> None:
        for handle in self.files.values():
            try:
                handle.close()
            except Exception:
                pass
