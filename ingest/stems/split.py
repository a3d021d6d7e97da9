"""Demucs' overlap-add split over a stream, so separation memory does not grow with length.

Why streamed: ``demucs.apply.apply_model`` on a whole track holds the track and
four full-length stems in memory (about 40 bytes per stereo frame: 1.6 GB for a
ten-minute song, 10 GB for an hour-long mix). :class:`SplitStream` runs exactly
Demucs' own split instead (segment-long chunks, triangular crossfade weights,
``overlap``), one chunk at a time over a sliding buffer, each chunk through a
caller's ``run_chunk`` (the separator's ``apply_model(..., split=False)``);
finished samples are handed out as soon as no later chunk touches them. Memory is
a few segments whatever the track's length, and the output equals what
``apply_model`` on the whole track returns.

Chunks are also the separation's unit of progress: each stream counts the chunks
it ran, and knows from the input's length how many it will run in all
(:meth:`SplitStream.planned_chunks`), so a face can say "chunk 12 / 80" instead of
a share of seconds that lags behind by the overlap.

This module knows nothing of models, files or the cache (``demucs.apply`` holds
the model-free split the same way), so it can be tested with any chunk function.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable

import torch
from demucs.apply import TensorChunk


class SplitStream:
    """Demucs' ``apply_model(split=True)`` over a stream, one chunk in memory at a time.

    Mirrors the split loop of ``demucs.apply.apply_model``: chunks of ``segment``
    seconds every ``(1 - overlap) * segment`` seconds, each weighted by the same
    triangle and summed, then divided by the summed weights. A sample is final once
    the next chunk starts after it, so it is handed out then. ``prefix`` zero frames
    are fed first and their output dropped: that is how one random shift of Demucs'
    shift trick looks on a stream.
    """

    def __init__(
        self,
        run_chunk: Callable[[TensorChunk], torch.Tensor],
        segment_length: int,
        overlap: float,
        sources: int,
        channels: int,
        device: torch.device,
        prefix: int = 0,
        transition_power: float = 1.0,
    ) -> None:
        self.run_chunk = run_chunk
        self.length = segment_length
        self.stride = int((1 - overlap) * segment_length)
        if self.stride <= 0:
            raise ValueError("overlap leaves no stride between chunks")
        half = segment_length // 2
        weight = torch.cat(
            [
                torch.arange(1, half + 1, device=device),
                torch.arange(segment_length - half, 0, -1, device=device),
            ]
        )
        self.weight = (weight / weight.max()) ** transition_power
        self.channels = channels
        self.buffer = torch.zeros(1, channels, 0)
        self.buffer_start = 0  # stream position of buffer[..., 0]
        self.total: int | None = None  # stream length, once the input ended
        self.next_offset = 0
        self.acc = torch.zeros(1, sources, channels, 0)
        self.weights = torch.zeros(0)
        self.acc_start = 0  # stream position of acc[..., 0]: everything before is handed out
        self.drop = prefix
        self.prefix = prefix
        self.chunks_done = 0  # chunks run so far
        if prefix:
            self.buffer = torch.zeros(1, channels, prefix)

    def planned_chunks(self, input_frames: int) -> int:
        """How many chunks a stream of ``input_frames`` runs in all (with the prefix).

        Chunks start every ``stride`` frames while the start is inside the stream, so
        the count is ``ceil((prefix + frames) / stride)``: exact for the frames given.
        """
        return math.ceil((self.prefix + max(0, int(input_frames))) / self.stride)

    @property
    def buffer_end(self) -> int:
        return self.buffer_start + self.buffer.shape[-1]

    def push(self, block: torch.Tensor) -> list[torch.Tensor]:
        """Feed (channels, n) input; returns finished (sources, channels, m) output."""
        self.buffer = torch.cat([self.buffer, block[None]], dim=-1)
        return self._run()

    def finish(self) -> list[torch.Tensor]:
        """The input ended: run the last chunks and hand out the rest."""
        self.total = self.buffer_end
        return self._run()

    def _run(self) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        while True:
            offset = self.next_offset
            if self.total is not None:
                if offset >= self.total:
                    break
            elif self.buffer_end < offset + self.length:
                break  # wait for more input
            chunk = TensorChunk(self.buffer, offset - self.buffer_start, self.length)
            result = self.run_chunk(chunk)
            self.chunks_done += 1
            n = result.shape[-1]
            self._accumulate(offset, (self.weight[:n] * result).to("cpu"), self.weight[:n].cpu())
            self.next_offset += self.stride
            ready = self.next_offset if self.total is None else min(self.next_offset, self.total)
            finished = self._emit(ready)
            if finished is not None:
                out.append(finished)
            self._trim_buffer()
        return out

    def _accumulate(self, offset: int, weighted: torch.Tensor, weight: torch.Tensor) -> None:
        start = offset - self.acc_start
        end = start + weighted.shape[-1]
        grow = end - self.acc.shape[-1]
        if grow > 0:
            self.acc = torch.cat([self.acc, self.acc.new_zeros(*self.acc.shape[:-1], grow)], -1)
            self.weights = torch.cat([self.weights, self.weights.new_zeros(grow)])
        self.acc[..., start:end] += weighted
        self.weights[start:end] += weight

    def _emit(self, ready: int) -> torch.Tensor | None:
        n = ready - self.acc_start
        if n <= 0:
            return None
        finished = self.acc[0, ..., :n] / self.weights[:n]
        self.acc = self.acc[..., n:].clone()
        self.weights = self.weights[n:].clone()
        self.acc_start = ready
        if self.drop:
            cut = min(self.drop, n)
            finished = finished[..., cut:]
            self.drop -= cut
        return finished if finished.shape[-1] else None

    def _trim_buffer(self) -> None:
        # The last (short) chunk is centred with context from up to half a segment
        # before it, so keep one segment of history before the next chunk.
        keep_from = max(self.buffer_start, self.next_offset - self.length)
        if keep_from > self.buffer_start:
            self.buffer = self.buffer[..., keep_from - self.buffer_start :].clone()
            self.buffer_start = keep_from


class ShiftedSplit:
    """Demucs' shift trick on a stream: ``shifts`` split streams, each delayed at random.

    ``apply_model(shifts=N)`` pads the track by half a second, runs the split on N
    randomly offset views and averages them aligned; here each view is a
    :class:`SplitStream` fed a random number of leading zeros, and the outputs are
    averaged as they become available. ``shifts=0`` is a single undelayed stream.
    """

    def __init__(self, make_stream: Callable[[int], SplitStream], shifts: int, max_shift: int):
        if shifts == 0:
            self.streams = [make_stream(0)]
            self.divide = None
        else:
            # Same draws, in the same order, as apply_model's shift loop.
            offsets = [random.randint(0, max_shift) for _ in range(shifts)]
            self.streams = [make_stream(max_shift - offset) for offset in offsets]
            self.divide = shifts
        self.pending: list[deque[torch.Tensor]] = [deque() for _ in self.streams]

    @property
    def chunks_done(self) -> int:
        return sum(stream.chunks_done for stream in self.streams)

    def planned_chunks(self, input_frames: int) -> int:
        """Chunks all the streams run for ``input_frames`` of input (each has its own prefix)."""
        return sum(stream.planned_chunks(input_frames) for stream in self.streams)

    def push(self, block: torch.Tensor) -> list[torch.Tensor]:
        for stream, pending in zip(self.streams, self.pending, strict=True):
            pending.extend(stream.push(block))
        return self._combine()

    def finish(self) -> list[torch.Tensor]:
        for stream, pending in zip(self.streams, self.pending, strict=True):
            pending.extend(stream.finish())
        return self._combine()

    def _combine(self) -> list[torch.Tensor]:
        if self.divide is None:
            out = list(self.pending[0])
            self.pending[0].clear()
            return out
        available = min(sum(t.shape[-1] for t in p) for p in self.pending)
        if available == 0:
            return []
        total: torch.Tensor | float = 0.0
        for pending in self.pending:
            total = total + _take(pending, available)
        return [total / self.divide]


def _take(pending: deque[torch.Tensor], n: int) -> torch.Tensor:
    parts = []
    while n:
        head = pending.popleft()
        if head.shape[-1] > n:
            pending.appendleft(head[..., n:])
            head = head[..., :n]
        parts.append(head)
        n -= head.shape[-1]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
