"""libsndfile: WAV, AIFF, AU, FLAC and MP3 here (and what FFmpeg cannot open).

Blocks are read with libsndfile's own ``sf_readf_float`` through soundfile's handle.
``SoundFile.read`` asks libsndfile for the position and seeks back to it around every
read; on MP3, mpg123's seek is not sample-exact, and that seek put glitches of up to
0.05 full scale at some block boundaries (4 of 108 test files; the direct read
matches FFmpeg's decode to 1e-6 there). It also dropped the frames of a read that
failed part-way, which the direct call keeps (a damaged FLAC keeps the half second
before the damage). bench/decode.py finds the two equally fast. The checks of
:mod:`embeddings.audio.checks` run on the header before a buffer is sized by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from embeddings.audio.checks import check_header
from embeddings.audio.errors import DecodeError, short_reason, sndfile_name

BLOCK_FRAMES = 1 << 16  # source frames per read: ~1.5 s at 44.1 kHz

# sndfile.h: decode an Ogg Opus stream at another of Opus' own rates; the header again.
_SFC_SET_ORIGINAL_SAMPLERATE = 0x1500
_SFC_GET_CURRENT_SF_INFO = 0x1002
OPUS_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)


@dataclass
class SndfileSource:
    """An open libsndfile handle: the header and the rate its blocks come at."""

    handle: sf.SoundFile
    sample_rate: int  # the file's own (for Opus: the rate libsndfile decodes at)
    channels: int
    frames: int | None  # declared; may be missing or wrong
    decoder: str

    def read(self, count: int = BLOCK_FRAMES) -> tuple[np.ndarray, Exception | None]:
        """Up to ``count`` frames as float32 (n, channels), and the error that cut them short.

        A read that fails part-way keeps the frames it decoded before the damage.
        """
        lib, ffi = getattr(sf, "_snd", None), getattr(sf, "_ffi", None)
        raw = getattr(self.handle, "_file", None)
        if lib is None or ffi is None or raw is None:  # another soundfile: its own read
            try:
                return self.handle.read(count, dtype="float32", always_2d=True), None
            except Exception as exc:
                return np.zeros((0, self.channels), np.float32), exc
        block = np.empty((count, self.channels), dtype=np.float32)
        got = lib.sf_readf_float(raw, ffi.cast("float *", block.ctypes.data), count)
        code = lib.sf_error(raw)
        problem = sf.LibsndfileError(code) if code else None
        return block[: max(int(got), 0)], problem

    def seek(self, frame: int) -> None:
        try:
            self.handle.seek(frame)
        except Exception as exc:
            raise DecodeError(
                f"cannot seek to {frame / self.sample_rate:.1f} s: {short_reason(exc)}"
            ) from None

    def close(self) -> None:
        self.handle.close()


def open_sndfile(path: Path, opus_rate_for: int | None = None) -> SndfileSource:
    """Open ``path`` with libsndfile: its own error if it cannot, DecodeError for a bad header.

    ``opus_rate_for``: decode an Ogg Opus file natively at the lowest Opus rate at or
    above this rate (24 kHz for 22,050 Hz) instead of 48 kHz, leaving the resampler
    less to do.
    """
    handle = sf.SoundFile(sndfile_name(path))  # raises sf.LibsndfileError / RuntimeError
    try:
        rate, frames = handle.samplerate, handle.frames
        check_header(rate, handle.channels)  # before any buffer is sized by it
        if opus_rate_for and (handle.format, handle.subtype) == ("OGG", "OPUS"):
            rate, frames = _decode_opus_at(handle, opus_rate_for)
    except BaseException:
        handle.close()
        raise
    return SndfileSource(
        handle=handle,
        sample_rate=rate,
        channels=handle.channels,
        frames=frames if frames and frames > 0 else None,
        decoder=f"libsndfile/{handle.format.lower()}",
    )


def _decode_opus_at(handle: sf.SoundFile, target_rate: int) -> tuple[int, int]:
    """Ask libsndfile to decode this Opus stream at a lower native rate; the new (rate, frames)."""
    lib, ffi, raw = getattr(sf, "_snd", None), getattr(sf, "_ffi", None), handle._file
    wanted = next((r for r in OPUS_RATES if r >= target_rate), OPUS_RATES[-1])
    if lib is None or ffi is None or wanted >= handle.samplerate:
        return handle.samplerate, handle.frames
    lib.sf_command(raw, _SFC_SET_ORIGINAL_SAMPLERATE, ffi.new("int *", wanted), ffi.sizeof("int"))
    info = ffi.new("SF_INFO *")
    lib.sf_command(raw, _SFC_GET_CURRENT_SF_INFO, info, ffi.sizeof("SF_INFO"))
    return int(info.samplerate), int(info.frames)
