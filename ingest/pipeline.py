"""The ingest pipeline: decode workers feed batched inference, results go to the catalog.

Worker processes hash, read tags, decode and compute log-mel features; the main
process batches segments from many tracks into one network call, aggregates each
finished track and commits it in one SQLite transaction. Every committed track is
complete, so a run killed at any point loses at most the tracks in flight, and
the next run picks them up (see :mod:`ingest.scan`).

This module runs one ingest from start to end and reads the workers' messages; the
parts it combines live beside it, one job each: :mod:`ingest.options` (what a run
is asked, what it reports), :mod:`ingest.worker_pool` (the decode processes),
:mod:`ingest.planning` (claims and moves), :mod:`ingest.batching` (network calls),
:mod:`ingest.recording` (finishing and committing a track) and
:mod:`ingest.progress`.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from catalog.claims import Claims
from embeddings.model_handle import LazyModel, loaded
from embeddings.windows import describe_analysis
from ingest.batching import POLL_SECONDS, Batching
from ingest.busy_signal import BusyWatch, Yielder
from ingest.lock import HeldLock, ingest_lock
from ingest.messages import Alive, Begin, Chunk, Done, Fail, Hashed, Message, Meta, ends_decoding
from ingest.options import IngestOptions, IngestSummary
from ingest.planning import Planning
from ingest.progress import ProgressSink
from ingest.recording import NON_FINITE_OUTPUT, Recording, TrackState, facts_without_hash
from ingest.scan import Plan, make_plan
from ingest.worker import Task
from ingest.worker_pool import WorkerPool

if TYPE_CHECKING:  # torch-backed modules load only when there is audio to analyse
    # and a Ray actor, which has no catalog, need not import SQLAlchemy and Alembic
    from catalog.store import Catalog
    from embeddings.checkpoint import GenreModel
    from embeddings.inference import Predictor

# The names other modules and tests have always imported from here.
_TrackState, _WorkerPool, _facts_without_hash = TrackState, WorkerPool, facts_without_hash
__all__ = [
    "NON_FINITE_OUTPUT", "IngestOptions", "IngestRun", "IngestSummary", "ProgressSink",
    "TrackState", "WorkerPool", "ingest",
]  # fmt: skip

INDEX_SAVE_SECONDS = 30.0
STALL_CHECK_SECONDS = 1.0  # how often hung workers are looked for; longer turns pause clocks


class IngestRun(Planning, Batching, Recording):
    """One ``sonic ingest``: plan, analyse, record, then mark what vanished."""

    def __init__(
        self,
        catalog: Catalog,
        model: GenreModel | LazyModel,
        options: IngestOptions | None = None,
        progress: ProgressSink | None = None,
    ) -> None:
        self.catalog = catalog
        self.model = model
        self.options = options or IngestOptions()
        self.progress = progress or ProgressSink()
        self.summary = IngestSummary(model_id=model.model_id, model_trained=model.trained)
        self.predictor: Predictor | None = None
        self.states: dict[int, TrackState] = {}
        self.batch: list[tuple[int, int, np.ndarray]] = []
        self.inflight: deque[tuple[list, Future]] = deque()
        self.executor: ThreadPoolExecutor | None = None
        self.threads = 1
        self.yielder = Yielder(None, 1)
        self.plan = Plan()
        self.claims: Claims | None = None
        self.pending: deque[Task] = deque()  # planned tasks not yet handed to a decoder
        self._last_save = time.monotonic()

    # -- the run ----------------------------------------------------------------------

    def run(self, roots: Iterable[Path], held: HeldLock | None = None) -> IngestSummary:
        """Ingest ``roots``; ``held`` is the catalog's write lock if the caller took it."""
        started = time.monotonic()
        roots = [Path(r) for r in roots]
        root = self.catalog.paths.root
        lock = nullcontext() if held and held.covers(root) else ingest_lock(self.catalog)
        with lock, Claims(self.catalog) as self.claims:
            self.catalog.genre_mapping()  # a broken genres.toml stops the run before any work
            previous = self.catalog.active_model_id
            if self.catalog.activate_model(
                self.model.model_id, self.model.genres, self.model.embedding_dim
            ):
                self.summary.previous_model_id = previous
            self.catalog.index()
            self.summary.index_repaired = self.catalog.index_repaired
            self.catalog.add_library_roots(roots)
            self.plan = make_plan(roots, self.catalog.file_states(), self.model.model_id)
            self.summary.files_seen = len(self.plan.seen_paths)
            self.summary.skipped = self.plan.skipped
            self.summary.unreadable_folders = list(self.plan.unreadable_folders)
            if not self.plan.tasks:
                self._note_unreadable_folders()
            for row_id, path in self.plan.restore:
                if self.claims.row(row_id) and self.claims.path(str(path)):
                    self._reuse(row_id, Path(path))
            try:
                if self.plan.tasks:
                    self._analyse(self.plan.tasks)
            finally:
                self.catalog.save_index()
            unclaimed = self.plan.moves.unclaimed(self.plan.missing_candidates)
            if self.claims.shared:
                unclaimed = self._still_missing(unclaimed)
            self.summary.missing = self.catalog.mark_missing(unclaimed)
            self.catalog.save_index()
            self.summary.other_model_tracks = self.catalog.tracks_of_other_models()
            # the library's own genre model, on the new embeddings only (no audio again);
            # imported here: it needs SQLAlchemy, which a Ray actor (an IngestRun with
            # no catalog) would otherwise import for nothing, on every node
            from ingest.library_genres import apply as apply_library_genres
            from ingest.library_genres import remember_shipped_threshold

            remember_shipped_threshold(self.catalog)
            self.summary.library_genres = apply_library_genres(self.catalog)
        self.summary.wall_seconds = time.monotonic() - started
        return self.summary

    def _analyse(self, tasks: list[Task]) -> None:
        from embeddings.inference import Predictor, op_threads

        self.model = loaded(self.model)  # torch and the network, now that there is work
        self.predictor = Predictor(self.model, self.options.device, self.options.precision)
        self.summary.inference = self.predictor.describe()
        self.summary.cpu_capability = _cpu_capability()
        self.summary.analysis = describe_analysis(self.options.analysis_seconds)
        tasks = [replace(t, analysis_s=self.options.analysis_seconds) for t in tasks]
        pool = WorkerPool(
            max(1, self.options.workers),
            self.model.frontend.to_dict(),
            self.plan.moved_hashes,
            self.options.stall_seconds,
            self.catalog.paths.root if self.options.yield_to_service else None,
        )
        watch = BusyWatch(self.catalog.paths.root) if self.options.yield_to_service else None
        previous_threads = self._start_inference_threads(watch)
        self.progress.start(len(tasks))
        if self.summary.previous_model_id:
            # a large library takes hours to redo; say why before the bar starts moving
            self.progress.note(
                f"the model changed from {self.summary.previous_model_id} to "
                f"{self.model.model_id}: tracks analysed with the old one are analysed "
                "again, and search covers only those redone so far"
            )
        self._note_unreadable_folders()
        self.pending = deque(tasks)
        try:
            with _one_blas_thread():
                self._drain(pool)
        finally:
            self.progress.close()
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.inflight.clear()
            if previous_threads is not None:
                op_threads(previous_threads)
            self.summary.yielded_seconds = round(self.yielder.rested_s, 1)
            self.yielder.close()
            pool.close()

    def _start_inference_threads(self, watch: BusyWatch | None) -> int | None:
        """The inference threads and how calls are handed to them, for every analysis.

        One place, because a Ray actor (``ingest.ray_actor``) that set these up itself
        once kept one slot per thread, no call queued behind a running one, and left
        its cores 1.7 busy of 2. ``watch``: the service to yield to (None: never).
        Returns the op-thread count to put back when the run ends (None: unchanged).
        """
        from embeddings.inference import op_threads

        self.threads = max(1, self.options.inference_threads)
        self.executor = ThreadPoolExecutor(self.threads, thread_name_prefix="sonic-infer")
        self.yielder = Yielder(watch, self.threads)
        return op_threads(1) if self.threads > 1 else None

    def _note_unreadable_folders(self) -> None:
        """Say which folders were out of sight (after ``start``, so a progress bar shows it)."""
        for folder, reason in self.plan.unreadable_folders:
            self.progress.note(f"skipped folder: {folder}: {reason}")

    def _drain(self, pool: WorkerPool) -> None:
        quiet_since = last_turn = last_stall_check = time.monotonic()
        ahead = max(4, 4 * max(1, self.options.workers))
        while self.states or self.pending:
            self._feed(pool, ahead)
            if not self.states:
                continue
            now = time.monotonic()
            if now - last_turn > STALL_CHECK_SECONDS:  # inference or a commit held us up
                pool.pause_clocks(now - last_turn)
            last_turn = now
            if now - last_stall_check >= STALL_CHECK_SECONDS:
                last_stall_check = now
                for task_id in pool.stop_stalled():
                    if task_id in self.states:
                        self._fail(task_id, self._stalled_reason())
            self._collect()
            if self._held_back():  # a full batch waits while the service is busy
                pool.pause_clocks(self._rest())  # workers blocked on the queue are not hung
                quiet_since = time.monotonic()
                continue
            busy = bool(self.batch or self.inflight)
            try:
                message = pool.results.get(timeout=0 if busy else POLL_SECONDS)
            except queue.Empty:
                if self.batch and self.yielder.may_start(len(self.inflight)):
                    self._submit()  # an inference thread is free: give it what there is
                    continue
                if self.inflight:
                    wait([self.inflight[0][1]], timeout=POLL_SECONDS / 10)
                    continue
                if self.batch:  # yielding to the service: the next call starts soon
                    pool.pause_clocks(self._rest())
                    quiet_since = time.monotonic()
                    continue
                for task_id, code in pool.reap_dead():
                    if task_id is not None and task_id in self.states:
                        self._fail(task_id, f"decoder process crashed (exit code {code})")
                if pool.idle() and time.monotonic() - quiet_since > 10 and _empty(pool.tasks):
                    for task_id in list(self.states):  # lost with a worker that died
                        self._fail(task_id, "decoder process died before starting this file")
                continue
            quiet_since = time.monotonic()
            self._handle(message, pool)
            while self._pending() >= self.options.batch_size and self.yielder.may_start(
                len(self.inflight)
            ):
                self._submit()
            self._maybe_save_index()

    # -- claims: concurrent ingests on a PostgreSQL catalog ---------------------------------

    def _stalled_reason(self) -> str:
        return (
            f"reading or decoding made no progress for {self.options.stall_seconds:g} s; "
            "the decoder was stopped (a hung decoder or an unresponsive disk)"
        )

    def _handle(self, message: Message, pool: WorkerPool) -> None:
        if isinstance(message, Begin):
            pool.began(message.worker_id, message.task_id)
            return
        task_id = message.task_id
        pool.heard(task_id)
        if isinstance(message, Alive):
            return
        if ends_decoding(message):
            pool.finished(task_id)
        state = self.states.get(task_id)
        if state is None:
            return
        match message:
            case Hashed(facts=facts, reusable=reusable):
                state.facts = facts
                if reusable:
                    self._reused_by_hash(state, pool)
            case Meta(tags=tags):
                state.tags = tags
            case Chunk(first=first, features=features, starts=starts):
                if starts is not None:
                    state.segment_starts.extend(float(x) for x in starts)
                state.sent = max(state.sent, first + len(features))
                self.batch.append((task_id, first, features))
            case Done():
                state.end = message
                self._maybe_finish(task_id)
            case Fail(reason=reason, audio=audio):
                self._fail(task_id, reason, audio)

    def _maybe_save_index(self) -> None:
        if time.monotonic() - self._last_save >= INDEX_SAVE_SECONDS:
            self.catalog.save_index()
            self._last_save = time.monotonic()


def _one_blas_thread():
    """NumPy's BLAS on one thread while the main process analyses (a no-op without
    threadpoolctl).

    The main process multiplies small matrices per batch (the segment projection):
    with a BLAS thread per core, each product woke threads that, on a machine whose
    cores the decode workers and the network already hold, waited for a core, and
    the calling thread spun for them (measured: 3-6 ms of CPU per product, ~0.1 ms
    on one thread). The network has its own threads (``--inference-threads``).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(1, user_api="blas")


def _cpu_capability() -> str | None:
    """The vector kernels PyTorch dispatches to in this process (None on old versions)."""
    import torch

    get = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    return str(get()) if callable(get) else None


def _empty(q) -> bool:
    try:
        return q.empty()
    except (NotImplementedError, OSError):
        return True


def ingest(
    roots: Iterable[Path],
    catalog: Catalog,
    model: GenreModel | LazyModel,
    options: IngestOptions | None = None,
    progress: ProgressSink | None = None,
    held: HeldLock | None = None,
) -> IngestSummary:
    """Index every audio file under ``roots`` into ``catalog`` (library entry point).

    ``model`` may be a :class:`~embeddings.model_handle.LazyModel`: its network is
    loaded only if some file needs analysing, so a re-run over an unchanged library
    never imports torch. ``held``: the catalog's write lock, when the caller holds it.
    """
    return IngestRun(catalog, model, options, progress).run(roots, held)
