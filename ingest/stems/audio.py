"""Streaming multichannel audio I/O for stem separation.

Demucs wants the stereo image, and the stems must come back at the track's own
sample rate, so the track is opened through the audio layer
(:func:`embeddings.audio.open_audio`) at its own rate with two channels: the same
decoders, header checks, sample cleaning and channel rule as the genre model's
mono. Blocks are resampled block by block and written straight to the stem files,
so no whole track is ever in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from embeddings.audio import DecodeError, Resampler, convert_channels, open_audio

__all__ = [
    "FORMATS",
    "MP3_MAX_RATE",
    "AudioBlocks",
    "BlockResampler",
    "StemFileWriter",
    "convert_channels",
    "open_blocks",
]

# Output formats: libsndfile container and subtype. FLAC is lossless at 24 bits; WAV
# keeps the model's float32 output exactly; MP3 is for small files to share.
FORMATS: dict[str, tuple[str, str | None]] = {
    "flac": ("FLAC", "PCM_24"),
    "wav": ("WAV", "FLOAT"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
MP3_MAX_RATE = 48_000

# The layer's streaming soxr resampler, for (frames, channels) blocks.
BlockResampler = Resampler


@dataclass
class AudioBlocks:
    """An open file: its source properties and a generator of (frames, channels) blocks."""

    sample_rate: int
    source_channels: int
    frames: int | None  # as declared by the container; may be missing or wrong
    blocks: Iterator[np.ndarray]  # float32 (n, channels) at ``sample_rate``


def open_blocks(path: Path, channels: int = 2) -> AudioBlocks:
    """Open ``path`` for streaming multichannel decode at its own sample rate.

    A file whose decoding stops part-way is refused (DecodeError saying where and
    why) rather than separated in part: a stem set is cached as the track's stems,
    and stems shorter than the track would pass for complete ones.
    """
    stream = open_audio(Path(path), None, channels)
    info = stream.info
    frames = int(round(info.duration_s * info.sample_rate)) if info.duration_s else None

    def blocks() -> Iterator[np.ndarray]:
        try:
            yield from stream.blocks
        finally:
            stream.blocks.close()
        if stream.stopped_early:
            raise DecodeError(stream.stopped_early)

    return AudioBlocks(stream.sample_rate, info.channels, frames, blocks())


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
