"""FFmpeg through PyAV: Vorbis, Opus and AAC/M4A here (and what libsndfile cannot open).

Decoding, the downmix (a ``pan`` filter following :mod:`embeddings.audio.channels`)
and, where chosen, the resampling run in one FFmpeg filter graph whose source is the
``amovie`` filter: FFmpeg reads, decodes and filters in C and hands Python frames of
64k samples. Feeding the same graph codec frame by codec frame from Python instead
(1,024 samples for AAC) costs a quarter to a third of the throughput on MP3, Vorbis,
Opus and AAC (bench/decode.py, "ffmpeg graph fed per frame").

When the graph stops on damaged data, the samples it held back for a full frame are
lost with it; so the file is then decoded again with Python feeding the same graph
(the samples are bit-identical), skipping what was already delivered, and stops at
the same damage having kept everything before it. A file whose name is not valid
UTF-8 (which filter arguments cannot carry) is decoded that way from the start.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from embeddings.audio.channels import pan_filter
from embeddings.audio.checks import check_header
from embeddings.audio.errors import DecodeError, short_reason

GRAPH_FRAMES = 1 << 16  # samples per frame out of the filter graph
# Seek this far before a window's start: Opus needs 80 ms of pre-roll before its
# samples match a decode from the start, and resamplers a few ms to settle.
SEEK_PREROLL_S = 0.25


def open_pyav_audio(path: Path):
    """Open ``path`` with FFmpeg: (container, first audio stream, sample rate, channels).

    Raises DecodeError, with the container closed, for anything that is not a
    decodable audio stream; the caller closes the container otherwise.
    """
    import av  # FFmpeg; imported only when a file needs it

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


def pyav_duration(container, audio) -> float | None:
    """The stream's declared duration in seconds, else the container's, else None."""
    if audio.duration is not None and audio.time_base is not None:
        return float(audio.duration * audio.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


@dataclass
class FfmpegSource:
    """What FFmpeg's header says of a file, and the means to decode it."""

    path: Path
    sample_rate: int
    channels: int
    duration_s: float | None
    decoder: str
    stream_index: int

    def blocks(
        self,
        channels: int,
        rate: int | None,
        seek_s: float = 0.0,
        frame_samples: int = GRAPH_FRAMES,
    ) -> Iterator[np.ndarray]:
        """float32 (n, ``channels``) blocks at ``rate`` (None: the file's own), resampled by FFmpeg.

        ``seek_s``: start there by seeking (the analysis windows of a long track),
        not by decoding everything before it. FFmpeg lands at or before the point
        (an Ogg page, a packet) a little ahead of it for the codec's pre-roll
        (:data:`SEEK_PREROLL_S`), and the first frame's timestamp says how many
        samples to drop, so the blocks begin within a few samples of ``seek_s``.
        Yields everything that decodes, then raises the decoder's error if it
        stopped on damaged data. ``frame_samples``: the size of the graph's frames
        (smaller for a window of a few seconds, so no more is decoded than it needs).
        """
        out_rate = rate or self.sample_rate
        target = int(round(seek_s * out_rate))
        delivered = 0
        if _utf8(str(self.path)) and _has_amovie():
            try:
                graph = _Graph(self, channels, rate, None, seek_s, frame_samples)
            except Exception:  # an FFmpeg without the filter's options: feed it from Python
                graph = None
            if graph is not None:
                try:
                    frames = graph.pull_all()
                    if target:  # drop what lies before the point, by the first timestamp
                        frames = _from_sample(frames, graph, target)
                    for block in frames:
                        delivered += len(block)
                        yield block
                    return
                except Exception:  # damaged data: decode again below, keeping the held-back tail
                    pass
        yield from _skip(self._fed_blocks(channels, rate), target + delivered)

    def _fed_blocks(self, channels: int, rate: int | None) -> Iterator[np.ndarray]:
        """The same graph, fed codec frame by codec frame from Python."""
        container, audio, _, _ = open_pyav_audio(self.path)
        try:
            graph = _Graph(self, channels, rate, source=audio)
            problem: Exception | None = None
            try:
                for frame in container.decode(audio):
                    graph.push(frame)
                    yield from graph.ready()
            except Exception as exc:  # damaged part-way: flush what decoded, then say why
                problem = exc
            graph.push(None)
            yield from graph.ready()
            if problem is not None:
                raise problem
        finally:
            container.close()


def probe(path: Path) -> FfmpegSource:
    """FFmpeg's view of ``path``'s header; raises DecodeError (header checks included)."""
    container, audio, rate, channels = open_pyav_audio(path)
    try:
        return FfmpegSource(
            path=Path(path),
            sample_rate=rate,
            channels=channels,
            duration_s=pyav_duration(container, audio),
            decoder=f"ffmpeg/{audio.codec_context.name}",
            stream_index=int(audio.index),
        )
    finally:
        container.close()


class _Graph:
    """source -> [aformat=float -> pan] -> [aresample] -> aformat=flt -> asetnsamples -> sink."""

    def __init__(
        self,
        src: FfmpegSource,
        channels: int,
        rate: int | None,
        source,
        seek_s: float = 0.0,
        frame_samples: int = GRAPH_FRAMES,
    ) -> None:
        import av

        self._av = av
        self.channels = channels
        self.rate = rate or src.sample_rate
        self._first_pts: float | None = None
        graph = av.filter.Graph()
        if source is None:
            name = _filter_value(str(Path(src.path).absolute()))
            args = f"filename={name}:s={src.stream_index}"
            if seek_s > SEEK_PREROLL_S:
                args += f":sp={seek_s - SEEK_PREROLL_S:.6f}"
            first = graph.add("amovie", args)
        else:
            first = graph.add_abuffer(template=source)
        self.source = first
        chain = [first]
        pan = pan_filter(src.channels, channels)
        if pan is not None:
            # float before the mix: on 16-bit input pan would mix in integers, rounding
            # the mean to 16 bits where libsndfile's numpy mean keeps float32
            chain.append(graph.add("aformat", "sample_fmts=fltp|flt"))
            chain.append(graph.add("pan", pan))
        if rate is not None and rate != src.sample_rate:
            chain.append(graph.add("aresample", str(rate)))
        chain.append(graph.add("aformat", "sample_fmts=flt"))
        chain.append(graph.add("asetnsamples", f"n={frame_samples}:p=0"))
        self.sink = graph.add("abuffersink")
        chain.append(self.sink)
        for a, b in zip(chain, chain[1:], strict=False):
            a.link_to(b)
        graph.configure()
        self.graph = graph

    def _array(self, frame) -> np.ndarray:
        if self._first_pts is None:
            pts, base = frame.pts, frame.time_base
            self._first_pts = float(pts * base) if pts is not None and base else 0.0
        return frame.to_ndarray().reshape(-1, self.channels).astype(np.float32, copy=False)

    def push(self, frame) -> None:
        self.source.push(frame)

    def ready(self) -> Iterator[np.ndarray]:
        """Frames the sink holds now (fed mode)."""
        while True:
            try:
                frame = self.sink.pull()
            except (self._av.BlockingIOError, self._av.EOFError):
                return
            yield self._array(frame)

    def first_sample(self) -> int:
        """Where (in output samples from the file's start) the first frame pulled began."""
        return int(round((self._first_pts or 0.0) * self.rate))

    def pull_all(self) -> Iterator[np.ndarray]:
        """Every frame to the end of the file (amovie mode); raises on damaged data."""
        idle = 0
        while True:
            try:
                frame = self.sink.pull()
            except self._av.EOFError:
                return
            except self._av.BlockingIOError:
                idle += 1
                if idle > 10_000:  # a source that never ends nor delivers: not a hang
                    raise DecodeError("FFmpeg stopped delivering audio") from None
                continue
            idle = 0
            yield self._array(frame)


def _from_sample(frames: Iterator[np.ndarray], graph: _Graph, target: int) -> Iterator[np.ndarray]:
    """``frames`` of a seeking graph from output sample ``target`` on, by the first timestamp."""
    first = next(frames, None)
    if first is None:
        return
    yield from _skip(chain([first], frames), max(0, target - graph.first_sample()))


def _skip(blocks: Iterator[np.ndarray], count: int) -> Iterator[np.ndarray]:
    """``blocks`` without their first ``count`` frames."""
    for block in blocks:
        if count >= len(block):
            count -= len(block)
            continue
        yield block[count:]
        count = 0


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _filter_value(text: str) -> str:
    """``text`` escaped as one value of a filter's options (``:``, ``=``, quotes, spaces)."""
    return "".join(c if c.isalnum() or ord(c) > 127 or c in "/._-" else "\\" + c for c in text)


_AMOVIE: bool | None = None


def _has_amovie() -> bool:
    global _AMOVIE
    if _AMOVIE is None:
        import av

        _AMOVIE = "amovie" in av.filter.filters_available
    return _AMOVIE
