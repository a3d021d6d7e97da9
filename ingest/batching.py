"""Segments from many tracks into network calls, and their results back to each track.

The main process gathers the feature chunks the decode workers send into batches of
at most ``--batch-size`` segments, runs them on a few inference threads side by
side (one core each), and applies the results strictly in submission order, so a
track's segments reach its best-window tracker in the order they were cut.
Mixed into :class:`ingest.pipeline.IngestRun`.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

import numpy as np

from embeddings.projection import project_segments
from ingest.busy_signal import Yielder

if TYPE_CHECKING:
    from embeddings.inference import BatchOutput, Predictor
    from ingest.options import IngestOptions
    from ingest.recording import TrackState

POLL_SECONDS = 0.2


class Batching:
    """Batched inference (a mixin of :class:`~ingest.pipeline.IngestRun`)."""

    batch: list[tuple[int, int, np.ndarray]]
    executor: ThreadPoolExecutor | None
    inflight: deque[tuple[list, Future]]
    options: IngestOptions
    predictor: Predictor | None
    states: dict[int, TrackState]
    threads: int
    yielder: Yielder

    def _submit(self) -> None:
        """Hand up to a batch of pending segments to an inference thread.

        Waits if all threads are busy. A call never takes more than ``batch_size``
        segments: activation memory grows with the batch and the allocator keeps
        the high-water mark, so the largest call sets the process's peak RSS.
        """
        while len(self.inflight) > self.threads:
            self._collect(block=True)
        batch = self._take(self.yielder.batch_limit(self.options.batch_size))
        features = np.concatenate([f for _, _, f in batch])
        self.inflight.append((batch, self.executor.submit(self._predict, features)))

    def _pending(self) -> int:
        return sum(len(f) for _, _, f in self.batch)

    def _held_back(self) -> bool:
        """A full batch is waiting but no call may start yet (all busy, or yielding)."""
        return self._pending() >= self.options.batch_size and not self.yielder.may_start(
            len(self.inflight)
        )

    def _rest(self) -> float:
        """Wait, reading no messages, until a call ends or the next may start; seconds waited.

        Not reading is the point: the decode workers fill their queue and block.
        """
        started = time.monotonic()
        if self.inflight:
            wait([self.inflight[0][1]], timeout=POLL_SECONDS)
        else:
            time.sleep(min(POLL_SECONDS, max(0.001, self.yielder.next_call_at - started)))
        rested = time.monotonic() - started
        if self.yielder.busy():
            self.yielder.rested_s += rested
        return rested

    def _predict(self, features: np.ndarray) -> tuple[BatchOutput, float]:
        """One network call (in an inference thread) and its wall time."""
        started = time.perf_counter()
        out = self.predictor.predict(features)
        return out, time.perf_counter() - started

    def _take(self, limit: int) -> list[tuple[int, int, np.ndarray]]:
        """The oldest pending segments, at most ``limit``, splitting a chunk if needed."""
        taken: list[tuple[int, int, np.ndarray]] = []
        count = 0
        while self.batch and count < limit:
            task_id, first, features = self.batch[0]
            room = limit - count
            if len(features) <= room:
                taken.append(self.batch.pop(0))
                count += len(features)
            else:
                taken.append((task_id, first, features[:room]))
                self.batch[0] = (task_id, first + room, features[room:])
                count = limit
        return taken

    def _collect(self, block: bool = False) -> None:
        """Apply finished inference results, strictly in submission order.

        Order matters: a track's chunks must reach its best-window tracker in the
        order they were cut. ``block`` waits for the oldest call.
        """
        while self.inflight and (block or self.inflight[0][1].done()):
            batch, future = self.inflight.popleft()
            out, seconds = future.result()
            self.yielder.finished(seconds)
            self._apply(batch, out)
            block = False

    def _apply(self, batch: list[tuple[int, int, np.ndarray]], out: BatchOutput) -> None:
        offset = 0
        finished = set()
        for task_id, first, feats in batch:
            n = len(feats)
            state = self.states.get(task_id)
            if state is not None:
                probs = out.probabilities[offset : offset + n]
                state.probs[first] = probs
                state.segment_embeddings[first] = project_segments(
                    out.embeddings[offset : offset + n]
                )
                if state.window is not None:
                    starts = state.segment_starts[first : first + n] or None
                    state.window.push(feats, probs, starts, self.model.frontend.segment_seconds)
                emb = out.embeddings[offset : offset + n].sum(axis=0, dtype=np.float64)
                state.embedding_sum = (
                    emb if state.embedding_sum is None else state.embedding_sum + emb
                )
                state.inferred += n
                finished.add(task_id)
            offset += n
        for task_id in finished:
            self._maybe_finish(task_id)
