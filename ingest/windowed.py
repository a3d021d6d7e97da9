"""Reading a long track as its analysis windows: only those parts are decoded.

Under the analysis budget (:func:`embeddings.windows.analysis_windows`) a worker
decodes each window on its own, seeking to it (libsndfile seeks natively, FFmpeg by
the ``amovie`` filter's seek point), and cuts it into segments exactly as a whole
track is cut. A window holds at most a few segments and the windows together at
most the budget, so the features of all of them are kept until the last one is
read: only then is it known whether the windows found audio at all. When they did
not (a header that declares far more than the file holds, a track silent where the
windows fell), the worker analyses the whole track instead, so a file indexed by
full analysis is indexed under the budget too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embeddings.audio import AudioInfo, DecodeError, open_audio, silent_peak
from embeddings.audio.checks import SampleCleaning
from embeddings.audio.seeking import VorbisWindows
from embeddings.audio.stream import FFMPEG_SOXR, decoder_for
from embeddings.frontend import FrontendConfig, StreamingSegmenter
from embeddings.windows import Window


@dataclass
class WindowedReading:
    """The segments of a track's windows, and what decoding them found."""

    info: AudioInfo
    segments: list[np.ndarray] = field(default_factory=list)  # (k, segment_samples) each
    starts: list[np.ndarray] = field(default_factory=list)  # seconds, one per segment
    frames_decoded: int = 0  # source frames, all windows together
    end_s: float = 0.0  # where the last decoded audio ended, in the track
    peak: float = 0.0
    stopped_early: str | None = None
    cleaning: SampleCleaning = field(default_factory=SampleCleaning)

    @property
    def decoded_seconds(self) -> float:
        return self.frames_decoded / self.info.sample_rate if self.info.sample_rate else 0.0

    @property
    def n_segments(self) -> int:
        return sum(len(s) for s in self.segments)

    @property
    def usable(self) -> bool:
        """Worth indexing as it is: some finite, non-silent audio in full segments."""
        return (
            self.n_segments > 0 and not self.cleaning.none_finite and silent_peak(self.peak) is None
        )

    def duration_s(self) -> float:
        """The track's length: as declared, unless decoding stopped before the end."""
        if self.stopped_early or not self.info.duration_s:
            return self.end_s
        return self.info.duration_s


def read_windows(
    path: Path,
    config: FrontendConfig,
    windows: list[Window],
    info: AudioInfo,
    alive: Callable[[], None] = lambda: None,
) -> WindowedReading:
    """Decode and segment each of ``windows`` of ``path``; stops at the first that comes short."""
    reading = WindowedReading(info=info)
    rate = config.sample_rate
    fast = _one_open_file(path, rate, info)
    try:
        for window in windows:
            if fast is not None:
                try:
                    if _read_fast(fast, reading, window, config, alive):
                        continue
                    break  # the file ended inside this window
                except Exception:  # anything unusual: this window and the rest, the usual way
                    fast.close()
                    fast = None
            if not _read_one(path, reading, window, config, info, alive):
                break
    finally:
        if fast is not None:
            fast.close()
    return reading


def _one_open_file(path: Path, rate: int, info: AudioInfo) -> VorbisWindows | None:
    """The file opened once for all its windows, where that path applies (Vorbis)."""
    if info.decoder != "ffmpeg/vorbis" or decoder_for(path) != FFMPEG_SOXR:
        return None
    try:
        return VorbisWindows(path, rate)
    except Exception:
        return None


def _read_fast(
    fast: VorbisWindows,
    reading: WindowedReading,
    window: Window,
    config: FrontendConfig,
    alive: Callable[[], None],
) -> bool:
    """One window from the open file; False when the file ended inside it."""
    rate = config.sample_rate
    want = int(round(window.length_s * rate))
    samples, cleaning, _ = fast.read(window.start_s, window.length_s)
    alive()
    got = len(samples)
    segmenter = StreamingSegmenter(config)
    if got:
        reading.peak = max(reading.peak, float(np.max(np.abs(samples))))
    kept = _keep(reading, segmenter.push(samples), window.start_s, 0, config)
    _keep(reading, segmenter.finish(), window.start_s, kept, config)
    _add_cleaning(reading.cleaning, cleaning)
    reading.frames_decoded += round(got * reading.info.sample_rate / rate)
    if got:
        reading.end_s = window.start_s + got / rate
    if got < want:
        reading.stopped_early = (
            f"no audio from {window.start_s + got / rate:.1f} s on, though the "
            f"header declares {reading.info.duration_s or 0:.1f} s"
        )
        return False
    return True


def _read_one(
    path: Path,
    reading: WindowedReading,
    window: Window,
    config: FrontendConfig,
    info: AudioInfo,
    alive: Callable[[], None],
) -> bool:
    """One window as a stream of its own; False when it came short (reading stops)."""
    rate = config.sample_rate
    want = int(round(window.length_s * rate))
    try:
        stream = open_audio(path, rate, start_s=window.start_s, seek=True)
    except (DecodeError, OSError) as exc:
        reading.stopped_early = f"cannot decode from {window.start_s:.1f} s: {exc}"
        return False
    # A window ends on a segment boundary, so no padded tail is cut from it;
    # one cut short by damage keeps its last part like a track's tail.
    segmenter = StreamingSegmenter(config)
    got = kept = 0
    try:
        for block in stream.blocks:
            alive()
            block = block[: want - got]
            got += len(block)
            if len(block):
                reading.peak = max(reading.peak, float(np.max(np.abs(block))))
            kept += _keep(reading, segmenter.push(block), window.start_s, kept, config)
            if got >= want:
                break
    finally:
        stream.blocks.close()
    _keep(reading, segmenter.finish(), window.start_s, kept, config)
    _add_cleaning(reading.cleaning, stream.cleaning)
    reading.frames_decoded += round(got * info.sample_rate / rate)
    if got:
        reading.end_s = window.start_s + got / rate
    if got < want:
        why = stream.stopped_early or (
            f"no audio from {window.start_s + got / rate:.1f} s on, though the "
            f"header declares {info.duration_s or 0:.1f} s"
        )
        reading.stopped_early = why
        return False
    return True


def _keep(reading: WindowedReading, segments: np.ndarray, start_s: float, kept: int, config) -> int:
    """Add a window's next ``segments`` (``kept`` of it came before); returns how many."""
    if len(segments):
        offsets = start_s + (kept + np.arange(len(segments))) * config.segment_seconds
        reading.segments.append(segments)
        reading.starts.append(offsets)
    return len(segments)


def _add_cleaning(total: SampleCleaning, part: SampleCleaning) -> None:
    total.seen += part.seen
    total.nonfinite += part.nonfinite
    total.clipped += part.clipped
