"""Reading audio files into arrays, with the same decoders and errors everywhere.

Ingest streams whole tracks block by block (``ingest/decode.py``); training,
pretraining, the similarity evaluation and the dataset report read a clip or an
excerpt at once. They all need the same two decoders, libsndfile for what it reads
(WAV, FLAC, OGG/Vorbis, Opus, MP3, AIFF) and FFmpeg through PyAV for the rest
(M4A/AAC and odd containers), and the same clear reasons when a file is bad. They
live here, in the bottom layer, so that ``embeddings`` can learn from a user's own
library, M4A included, without importing ``ingest``; ingest builds its streaming
decoder on these pieces. Samples come out as ingest's do: the channel mean, then
soxr for libsndfile's output and FFmpeg's own resampler for PyAV's.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

READ_FRAMES = 1 << 16  # source frames per libsndfile read: ~1.5 s at 44.1 kHz
SILENCE_PEAK = 1e-4  # -80 dBFS: below one 16-bit LSB of dither counts as silence

# What a header may declare before anything is allocated for it. The resampler's
# output per block grows with target rate / source rate: a WAV declaring 1 Hz made
# one 64k-frame read come out as 1.4 billion samples (a 9 GB process). Real audio
# lives well inside these bounds (8 kHz telephony to 384 kHz studio masters, 7.1.4
# and ambisonic layouts well under 32 channels).
MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 32

# Float files can hold any value; audio is nominally within +-1. A sample beyond
# +-SAMPLE_BOUND (60 dB over full scale) is damage, and squares of values like 1e30
# overflow float32 in the power spectrum, so such samples are clipped to the bound.
SAMPLE_BOUND = 1_000.0


class DecodeError(Exception):
    """The file could not be decoded at all; the message is shown to the user."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header declares."""

    sample_rate: int
    channels: int
    duration_s: float | None  # missing or wrong in some containers
    decoder: str


def check_header(sample_rate: int, channels: int) -> None:
    """Refuse a header whose rate or channel count no real audio has, before any read.

    Every open path calls this (libsndfile and FFmpeg, streaming and whole-file), so
    ingest, uploads and training share one rule and one wording.
    """
    if sample_rate <= 0 or channels <= 0:
        raise DecodeError("file declares no sample rate or channels")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise DecodeError(
            f"the file declares a sample rate of {sample_rate:,} Hz; only "
            f"{MIN_SAMPLE_RATE:,}–{MAX_SAMPLE_RATE:,} Hz are read"
        )
    if channels > MAX_CHANNELS:
        raise DecodeError(
            f"the file declares {channels:,} channels; at most {MAX_CHANNELS} are read"
        )


@dataclass
class SampleCleaning:
    """Counts what :meth:`clean` had to repair, so the track's warning can say so.

    A NaN or an infinity anywhere would reach the network and turn every
    probability into NaN; one resampler pass spreads it over the whole filter
    length first. So samples are cleaned as they leave the decoder, before
    resampling: non-finite ones become 0 (silence) and huge ones are clipped.
    """

    seen: int = 0
    nonfinite: int = 0
    clipped: int = 0

    def clean(self, block: np.ndarray) -> np.ndarray:
        """``block`` with non-finite samples zeroed and huge ones clipped (counted)."""
        self.seen += block.size
        if block.size == 0:
            return block
        # Two reductions and no copy on the common path; NaN fails both comparisons.
        if -SAMPLE_BOUND <= block.min() and block.max() <= SAMPLE_BOUND:
            return block
        finite = np.isfinite(block)
        bad = block.size - int(np.count_nonzero(finite))
        out = np.where(finite, block, 0).astype(block.dtype, copy=False)
        huge = np.abs(out) > SAMPLE_BOUND
        self.nonfinite += bad
        self.clipped += int(np.count_nonzero(huge))
        return np.clip(out, -SAMPLE_BOUND, SAMPLE_BOUND, out=out)

    @property
    def none_finite(self) -> bool:
        """True when every sample read so far was NaN or infinite."""
        return self.seen > 0 and self.nonfinite == self.seen

    def note(self) -> str | None:
        """What was repaired, in words for the track's warning; None if nothing was."""
        parts = []
        if self.nonfinite:
            parts.append(
                f"replaced {self.nonfinite:,} non-finite samples (NaN or infinity) with silence"
            )
        if self.clipped:
            parts.append(
                f"clipped {self.clipped:,} samples beyond ±{SAMPLE_BOUND:,.0f} "
                "(far outside the usual ±1 range)"
            )
        return "; ".join(parts) or None


NO_FINITE_SAMPLES = "no finite audio samples (every sample is NaN or infinite)"


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


def open_pyav_audio(path: Path):
    """Open ``path`` with FFmpeg: (container, first audio stream, sample rate, channels).

    Raises DecodeError, with the container closed, for anything that is not a
    decodable audio stream; the caller closes the container otherwise.
    """
    import av  # FFmpeg; imported only for files libsndfile cannot read

    try:
        container = av.open(str(path))
    except Exception as exc:
        raise DecodeError(str(exc)) from exc
    try:
        if not container.streams.audio:
            raise DecodeError("no audio stream in the file")
        audio = container.streams.audio[0]
        ctx = audio.codec_context
        if ctx is None:  # the codec field is damaged, or names a codec FFmpeg lacks
            raise DecodeError("the audio stream's codec is unknown or its header is damaged")
        rate = int(ctx.sample_rate or 0)
        layout = getattr(ctx, "layout", None)
        channels = int(getattr(ctx, "channels", 0) or (len(layout.channels) if layout else 0))
        if rate <= 0 or channels <= 0:
            raise DecodeError("audio stream declares no sample rate or channels")
        check_header(rate, channels)
    except DecodeError:
        container.close()
        raise
    except Exception as exc:  # any other surprise from a damaged header is still a reason
        container.close()
        raise DecodeError(f"damaged audio stream header: {short_reason(exc)}") from exc
    return container, audio, rate, channels


def resampled_mono(frame) -> np.ndarray:
    """A mono float frame from FFmpeg's resampler as float32 samples.

    FFmpeg's output is cleaned (see :class:`SampleCleaning`), not its decoder's
    frames: those come straight from a possibly damaged stream, and reading their
    planes ourselves segfaulted on a corrupt M4A declaring more planes than it had.
    A NaN smeared by the resampler is zeroed over its few filter taps instead.
    """
    return frame.to_ndarray().reshape(-1).astype(np.float32, copy=False)


def pyav_duration(container, audio) -> float | None:
    """The stream's declared duration in seconds, else the container's, else None."""
    if audio.duration is not None and audio.time_base is not None:
        return float(audio.duration * audio.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


def silent_peak(peak: float) -> str | None:
    """The reason a track whose loudest sample is ``peak`` counts as silent, else None."""
    if peak > SILENCE_PEAK:
        return None
    level = "-inf" if peak == 0 else f"{20 * np.log10(peak):.0f}"
    return f"silent: peak level {level} dBFS"


def silence_reason(audio: np.ndarray) -> str | None:
    """Why ``audio`` holds nothing to learn from or index (no samples, or silence), else None."""
    if len(audio) == 0:
        return "no audio decoded"
    return silent_peak(float(np.max(np.abs(audio))))


def short_reason(exc: Exception) -> str:
    """The last line of a decoder's message, without libsndfile's "Error opening" prefix."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text.removeprefix("Error opening ").strip()


# libsndfile's words for a format it does not recognise, said of a file that exists.
_SNDFILE_UNRECOGNISED = "File does not exist or is not a regular file"


def sndfile_name(path: Path | str) -> str | bytes:
    """``path`` as libsndfile can open it: its bytes when the name is not valid UTF-8.

    soundfile encodes a str name strictly, so a Latin-1 file name (which Python holds
    with lone surrogates) would fail there and fall through to FFmpeg, a different
    decoder and resampler; as bytes it opens like any other file.
    """
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name)
    return name


def _without_path(reason: str, path: str) -> str:
    """A decoder's reason with the file's name taken out: the caller names the file."""
    for quoted in (f"'{path}'", f'"{path}"', repr(sndfile_name(path))):
        reason = reason.replace(f": {quoted}", "").replace(f"{quoted}: ", "")
    return re.sub(r"^\[Errno -?\d+\]\s*", "", reason).strip(" .;:") or reason


def unreadable(sf_exc: Exception, av_exc: Exception, path: Path | None = None) -> DecodeError:
    """The error for a file neither decoder could open, naming both reasons.

    libsndfile answers "File does not exist or is not a regular file" for any format
    it does not know; the file does exist by then, so that is said plainly instead.
    """
    sf_reason, av_reason = short_reason(sf_exc), str(av_exc)
    if path is not None:
        sf_reason, av_reason = (
            _without_path(sf_reason, str(path)),
            _without_path(av_reason, str(path)),
        )
    if _SNDFILE_UNRECOGNISED in sf_reason:
        sf_reason = "format not recognised"
    return DecodeError(f"not a readable audio file (libsndfile: {sf_reason}; ffmpeg: {av_reason})")


def failure_reason(exc: Exception) -> str:
    """One line for a user: a DecodeError's own message, else the exception's type too."""
    if isinstance(exc, DecodeError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"cannot read file: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def _check_not_empty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise DecodeError("empty file (0 bytes)")


def audio_info(path: Path) -> AudioInfo:
    """The header of ``path``, from libsndfile or else FFmpeg; raises DecodeError."""
    import soundfile as sf

    path = Path(path)
    _check_not_empty(path)
    try:
        info = sf.info(sndfile_name(path))
    except Exception as sf_exc:
        try:
            container, audio, rate, channels = open_pyav_audio(path)
        except DecodeError as av_exc:
            raise unreadable(sf_exc, av_exc, path) from None
        try:
            decoder = f"ffmpeg/{audio.codec_context.name}"
            return AudioInfo(rate, channels, pyav_duration(container, audio), decoder)
        finally:
            container.close()
    check_header(info.samplerate, info.channels)
    duration = info.frames / info.samplerate if info.frames > 0 else None
    return AudioInfo(info.samplerate, info.channels, duration, f"libsndfile/{info.format.lower()}")


def read_audio(
    path: Path, sample_rate: int, start_s: float = 0.0, max_seconds: float | None = None
) -> tuple[np.ndarray, AudioInfo]:
    """Mono float32 at ``sample_rate`` from ``start_s``, at most ``max_seconds``; and the header.

    libsndfile seeks to the start, so an excerpt of a long file costs only the
    excerpt; FFmpeg decodes from the beginning and stops once it has enough. A file
    damaged part-way keeps what decoded before the damage, as ingest does; one
    that yields nothing raises :class:`DecodeError`.
    """
    import soundfile as sf

    path = Path(path)
    _check_not_empty(path)
    try:
        handle = sf.SoundFile(sndfile_name(path))
    except Exception as sf_exc:
        try:
            container, audio, rate, channels = open_pyav_audio(path)
        except DecodeError as av_exc:
            raise unreadable(sf_exc, av_exc, path) from None
        return _read_pyav(container, audio, rate, channels, sample_rate, start_s, max_seconds)
    with handle:
        return _read_soundfile(handle, sample_rate, start_s, max_seconds)


def _read_soundfile(
    handle, sample_rate: int, start_s: float, max_seconds: float | None
) -> tuple[np.ndarray, AudioInfo]:
    import soxr

    rate = handle.samplerate
    check_header(rate, handle.channels)
    frames = handle.frames if handle.frames > 0 else None
    info = AudioInfo(
        rate, handle.channels, frames / rate if frames else None,
        f"libsndfile/{handle.format.lower()}",
    )  # fmt: skip
    start = int(round(start_s * rate))
    if start:
        try:
            handle.seek(start)
        except Exception as exc:
            raise DecodeError(f"cannot seek to {start_s:.1f} s: {short_reason(exc)}") from None
    wanted = int(round(max_seconds * rate)) if max_seconds else None
    parts: list[np.ndarray] = []
    got = 0
    problem: Exception | None = None
    cleaning = SampleCleaning()
    while wanted is None or got < wanted:
        count = READ_FRAMES if wanted is None else min(READ_FRAMES, wanted - got)
        try:
            block = handle.read(count, dtype="float32", always_2d=True)
        except Exception as exc:  # a damaged frame deep inside the file: keep what decoded
            problem = exc
            break
        if len(block) == 0:
            break
        parts.append(downmix(cleaning.clean(block)))
        got += len(block)
    if not parts:
        reason = f": {short_reason(problem)}" if problem else ""
        raise DecodeError(f"no audio frames could be decoded{reason}")
    if cleaning.none_finite:
        raise DecodeError(NO_FINITE_SAMPLES)
    audio = np.concatenate(parts)
    if rate != sample_rate:
        audio = soxr.resample(audio, rate, sample_rate, quality="HQ")
    return audio.astype(np.float32, copy=False), info


def _read_pyav(
    container, audio, rate: int, channels: int, sample_rate: int, start_s: float,
    max_seconds: float | None,
) -> tuple[np.ndarray, AudioInfo]:  # fmt: skip
    import av

    skip = int(round(start_s * sample_rate))
    stop = skip + int(round(max_seconds * sample_rate)) if max_seconds else None
    parts: list[np.ndarray] = []
    got = 0
    problem: Exception | None = None
    cleaning = SampleCleaning()
    try:
        info = AudioInfo(
            rate, channels, pyav_duration(container, audio), f"ffmpeg/{audio.codec_context.name}"
        )
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        try:
            for frame in container.decode(audio):
                for out in resampler.resample(frame):
                    parts.append(cleaning.clean(resampled_mono(out)))
                    got += len(parts[-1])
                if stop is not None and got >= stop:
                    break
        except Exception as exc:  # damaged part-way: keep what decoded
            problem = exc
        if stop is None or got < stop:
            for out in resampler.resample(None):
                parts.append(cleaning.clean(resampled_mono(out)))
    finally:
        container.close()
    decoded = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    if len(decoded) == 0:
        reason = f": {short_reason(problem)}" if problem else ""
        raise DecodeError(f"no audio frames could be decoded{reason}")
    if cleaning.none_finite:
        raise DecodeError(NO_FINITE_SAMPLES)
    return decoded[skip:stop], info
