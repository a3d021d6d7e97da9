"""Many short windows of one Vorbis file through one open demuxer and decoder.

The analysis budget reads a long track as thirty 3-s windows. Opening each window
as a stream of its own (:func:`~embeddings.audio.stream.open_audio` with ``seek``)
costs, per window, a probe (``av.open``), an ``amovie`` graph that opens and parses
the file again, and tearing both down: about 8 ms of CPU on a 44.1 kHz Ogg
Vorbis track against about 4 ms of decoding, so the windows of a four-minute
track cost as much CPU as decoding it whole. Here the file is opened once and
each window is one seek, a few packets decoded, the channel mean taken in NumPy
and soxr HQ on the window's source samples: the same decoder, the same seek point
(:data:`~embeddings.audio.ffmpeg.SEEK_PREROLL_S` before the window), the same
samples dropped by timestamp and the same resampler as the per-window stream
(``tests/test_audio_layer.py`` checks they agree).

Only Vorbis (FFmpeg's float planar decoder, resampled by soxr) takes this path;
anything unexpected (another codec or sample format, damaged data, a failed seek)
raises, and the caller reads that window and the rest the per-window way, whose
rules for damaged files are the layer's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embeddings.audio.checks import SampleCleaning
from embeddings.audio.ffmpeg import SEEK_PREROLL_S, open_pyav_audio
from embeddings.audio.resample import Resampler

# Source frames decoded beyond a window's end before resampling it, so soxr (whose
# delay is well under this) has the window's last output samples without a flush.
MARGIN_FRAMES = 1 << 13


class UnsupportedHere(RuntimeError):
    """This file or window is not for this path; read it the per-window way."""


class VorbisWindows:
    """An open Vorbis file from which windows are read at ``sample_rate``, mono."""

    def __init__(self, path: Path, sample_rate: int) -> None:
        self.container, self.audio, self.source_rate, self.channels = open_pyav_audio(path)
        try:
            if self.audio.codec_context.name != "vorbis":
                raise UnsupportedHere(f"codec {self.audio.codec_context.name}, not vorbis")
            if self.audio.time_base is None:
                raise UnsupportedHere("the stream has no time base")
        except BaseException:
            self.container.close()
            raise
        self.sample_rate = sample_rate
        self._weights = np.full(self.channels, 1.0 / self.channels, dtype=np.float32)

    def read(self, start_s: float, length_s: float) -> tuple[np.ndarray, SampleCleaning, bool]:
        """Mono float32 of the window at ``sample_rate`` (at most ``length_s``), its sample
        cleaning, and whether the file ended before the window did.

        The decoded planes are only gathered per packet; the mean, the checks and
        the resampling run once over the window. Raises on anything this path does
        not handle (the caller falls back).
        """
        want = int(round(length_s * self.sample_rate))
        first = int(round(start_s * self.source_rate))  # the window's first source frame
        # enough source for ``want`` output samples and soxr's delay, read in one go
        enough = int(np.ceil(want * self.source_rate / self.sample_rate)) + MARGIN_FRAMES
        base = self.audio.time_base
        seek_to = start_s - SEEK_PREROLL_S if start_s > SEEK_PREROLL_S else 0.0
        self.container.seek(int(seek_to / base), stream=self.audio, backward=True)
        cleaning = SampleCleaning()
        resample = Resampler(self.source_rate, self.sample_rate, 1)
        planes: list[list[np.ndarray]] = [[] for _ in range(self.channels)]
        position: int | None = None  # source frame of the first decoded sample
        decoded = 0
        out: list[np.ndarray] = []
        got = 0
        ended = True
        for packet in self.container.demux(self.audio):
            for frame in packet.decode():
                if position is None:  # counted on from the first frame, as the stream does
                    if frame.pts is None or frame.format.name != "fltp":
                        raise UnsupportedHere("a first frame without timestamp, or not fltp")
                    position = int(round(float(frame.pts * base) * self.source_rate))
                n = frame.samples
                for channel, plane in zip(planes, frame.planes, strict=True):
                    channel.append(np.frombuffer(plane, np.float32, n))
                decoded += n
            if position is not None and position + decoded >= first + enough:
                part = self._resampled(planes, position, first, cleaning, resample, False)
                out.append(part)
                got += len(part)
                if got >= want:
                    ended = False
                    break
                position, decoded = max(first, position + decoded), 0
                first = position
        if ended and position is not None:
            out.append(self._resampled(planes, position, first, cleaning, resample, True))
        samples = np.concatenate(out) if out else np.zeros(0, np.float32)
        return samples[:want].astype(np.float32, copy=False), cleaning, ended

    def _resampled(self, planes, position, first, cleaning, resample, last) -> np.ndarray:
        """The gathered planes from source frame ``first`` on: mean, checked, resampled."""
        stacked = np.stack([np.concatenate(c) if c else np.zeros(0, np.float32) for c in planes])
        for channel in planes:
            channel.clear()
        mono = self._weights @ stacked[:, max(0, first - position) :]  # the channel mean
        return resample(cleaning.clean(mono), last=last)

    def close(self) -> None:
        self.container.close()
