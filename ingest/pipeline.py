"""The ingest pipeline: decode workers feed batched inference, results go to the catalog.

Worker processes hash, read tags, decode and compute log-mel features; the main
process batches segments from many tracks into one network call, aggregates each
finished track and commits it in one SQLite transaction. Every committed track is
complete, so a run killed at any point loses at most the tracks in flight, and
the next run picks them up (see :mod:`ingest.scan`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from catalog.claims import Claims
from catalog.records import Analysis, AudioFacts, Explanation, FileFacts, Tags
from catalog.schema import Track, TrackStatus
from catalog.store import Catalog
from embeddings.atomic import atomic_write
from embeddings.model_handle import LazyModel, loaded
from embeddings.projection import project_segments
from embeddings.windows import DEFAULT_ANALYSIS_SECONDS, BestWindowTracker, describe_analysis
from ingest.artefacts import heatmap_file
from ingest.busy_signal import BusyWatch, Yielder
from ingest.library_genres import apply as apply_library_genres
from ingest.library_genres import remember_shipped_threshold
from ingest.lock import HeldLock, ingest_lock
from ingest.messages import Alive, Begin, Chunk, Done, Fail, Hashed, Message, Meta, ends_decoding
from ingest.scan import Plan, make_plan
from ingest.worker import Task, file_facts, single_thread_env, worker_main

if TYPE_CHECKING:  # torch-backed modules load only when there is audio to analyse
    from embeddings.checkpoint import GenreModel
    from embeddings.inference import BatchOutput, Predictor

INDEX_SAVE_SECONDS = 30.0
POLL_SECONDS = 0.2
STALL_CHECK_SECONDS = 1.0  # how often hung workers are looked for; longer turns pause clocks
NON_FINITE_OUTPUT = (
    "the model produced non-finite output (NaN or infinity) for this file; "
    "nothing was stored for it"
)


@dataclass
class IngestOptions:
    workers: int = os.cpu_count() or 1
    # Inference calls run side by side, one core each, rather than one call spread
    # over all cores: a multi-threaded call stalls whenever a decode worker holds one
    # of its cores, while independent single-threaded calls just share the CPU.
    inference_threads: int = os.cpu_count() or 1
    batch_size: int = 32
    aggregation: str = "mean"
    device: str | None = None
    precision: str = "auto"
    heatmaps: bool = True  # Grad-CAM heatmap + band focus per track
    heatmap_segments: int = 4  # length of the explained window, in segments
    # Seconds of each long track analysed, as evenly spread windows decoded on their
    # own (embeddings.windows.analysis_windows); None: whole tracks (--analysis full).
    analysis_seconds: float | None = DEFAULT_ANALYSIS_SECONDS
    # A decode worker that sends nothing about its file for this long is taken to be
    # hung (a stuck decoder, an unresponsive disk) and is killed; the file fails with
    # that reason and a new worker takes over. It is a no-progress budget, not a
    # length limit: workers report in at least every ALIVE_SECONDS while a long
    # track streams, and the main process's own busy spells do not count.
    stall_seconds: float = 120.0
    # While a `sonic serve` on the same data directory is answering requests, run one
    # network call at a time and rest between calls (ingest.busy_signal).
    yield_to_service: bool = True


@dataclass
class IngestSummary:
    files_seen: int = 0
    analysed: int = 0
    skipped: int = 0
    reused: int = 0  # unchanged content under a new mtime or path (moves, touches)
    failed: list[tuple[str, str]] = field(default_factory=list)
    # Folders the scan could not list: their files were neither seen nor marked missing.
    unreadable_folders: list[tuple[str, str]] = field(default_factory=list)
    missing: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    index_repaired: bool = False
    model_id: str = ""
    model_trained: bool = True
    inference: str | None = None  # the path the network ran on (Predictor.describe), if it ran
    analysis: str | None = None  # how much of each track was analysed (describe_analysis)
    # PostgreSQL: files another ingest running at the same time was analysing (its work)
    claimed_elsewhere: int = 0
    previous_model_id: str | None = None  # set when this run switched the catalog's model
    other_model_tracks: int = 0  # analysed by another model: out of search until redone
    yielded_seconds: float = 0.0  # time the network stood aside for a busy `sonic serve`
    nodes: dict[str, int] = field(default_factory=dict)  # files per Ray node (--ray only)
    library_genres: int = 0  # tracks the library genre model (learn-genres) predicted now

    @property
    def processed(self) -> int:
        return self.analysed + self.skipped + self.reused

    def to_dict(self) -> dict:
        return {
            "files_seen": self.files_seen,
            "analysed": self.analysed,
            "skipped": self.skipped,
            "reused": self.reused,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "unreadable_folders": [{"path": p, "reason": r} for p, r in self.unreadable_folders],
            "missing": self.missing,
            "audio_hours": self.audio_seconds / 3600,
            "wall_seconds": self.wall_seconds,
            "index_repaired": self.index_repaired,
            "model_id": self.model_id,
            "model_trained": self.model_trained,
            "inference": self.inference,
            "analysis": self.analysis,
            "previous_model_id": self.previous_model_id,
            "other_model_tracks": self.other_model_tracks,
            "yielded_seconds": self.yielded_seconds,
            "claimed_elsewhere": self.claimed_elsewhere,
            "nodes": self.nodes,
            "library_genres": self.library_genres,
        }


@dataclass
class _TrackState:
    """A track in flight: what the workers sent so far and what inference returned."""

    task: Task
    facts: FileFacts | None = None
    tags: Tags | None = None
    probs: dict[int, np.ndarray] = field(default_factory=dict)  # first segment -> probs
    segment_embeddings: dict[int, np.ndarray] = field(default_factory=dict)  # projected, fp16
    window: BestWindowTracker | None = None  # features of the best window per genre
    embedding_sum: np.ndarray | None = None
    # Where each segment starts (seconds), under the analysis budget; empty when the
    # segments are consecutive from the start of the track.
    segment_starts: list[float] = field(default_factory=list)
    sent: int = 0
    inferred: int = 0
    end: Done | None = None  # the worker's last message, once it arrived


class ProgressSink:
    """What the pipeline reports to: the CLI plugs a progress bar in here."""

    def start(self, total_files: int) -> None: ...
    def advance(self, audio_seconds: float) -> None: ...
    def note(self, message: str) -> None: ...
    def close(self) -> None: ...


class _WorkerPool:
    """Decode worker processes with crash and hang detection, and replacement."""

    def __init__(
        self,
        count: int,
        frontend: dict,
        moved_hashes: frozenset[str],
        stall_seconds: float = 120.0,
        busy_dir: Path | None = None,
    ) -> None:
        self.ctx = mp.get_context("spawn")  # torch in the parent makes fork unsafe
        self.busy_dir = str(busy_dir) if busy_dir is not None else None  # workers yield too
        self.tasks = self.ctx.Queue()
        self.results = self.ctx.Queue(maxsize=max(4, 4 * count))
        self.frontend = frontend
        self.moved_hashes = moved_hashes
        self.stall_seconds = stall_seconds
        self.procs: dict[int, mp.process.BaseProcess] = {}
        self.current: dict[int, int | None] = {}
        # worker id -> monotonic time by which it must next report on its task
        self.deadline: dict[int, float] = {}
        self._next_id = 0
        for _ in range(count):
            self._spawn()

    def _spawn(self) -> None:
        worker_id = self._next_id
        self._next_id += 1
        saved = dict(os.environ)
        os.environ.update(single_thread_env())
        try:
            proc = self.ctx.Process(
                target=worker_main,
                args=(worker_id, self.frontend, self.moved_hashes, self.tasks, self.results),
                # workers end when this process does, and yield to the service too
                kwargs={"parent_pid": os.getpid(), "busy_dir": self.busy_dir},
                daemon=True,
                name=f"sonic-decode-{worker_id}",
            )
            proc.start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.procs[worker_id] = proc
        self.current[worker_id] = None

    def submit(self, task: Task) -> None:
        self.tasks.put(task)

    def began(self, worker_id: int, task_id: int) -> None:
        self.current[worker_id] = task_id
        self.deadline[worker_id] = time.monotonic() + self.stall_seconds

    def heard(self, task_id: int) -> None:
        """A message about ``task_id`` arrived: its worker's clock starts again."""
        for worker_id, current in self.current.items():
            if current == task_id:
                self.deadline[worker_id] = time.monotonic() + self.stall_seconds

    def finished(self, task_id: int) -> None:
        for worker_id, current in self.current.items():
            if current == task_id:
                self.current[worker_id] = None

    def pause_clocks(self, seconds: float) -> None:
        """The main process was busy for ``seconds`` (reading nothing): that is not a hang.

        A worker may have sat blocked on the full results queue all that time.
        """
        for worker_id in self.deadline:
            self.deadline[worker_id] += seconds

    def stop_stalled(self) -> list[int]:
        """Kill and replace workers past their deadline; returns the task ids they held."""
        now = time.monotonic()
        stopped = []
        for worker_id, proc in list(self.procs.items()):
            task_id = self.current.get(worker_id)
            if task_id is None or now <= self.deadline.get(worker_id, now):
                continue
            proc.kill()  # SIGKILL: a decoder stuck in C code ignores anything gentler
            proc.join(timeout=2)
            del self.procs[worker_id]
            self.current.pop(worker_id, None)
            self.deadline.pop(worker_id, None)
            self._spawn()
            stopped.append(task_id)
        return stopped

    def reap_dead(self) -> list[tuple[int | None, int]]:
        """Replace crashed workers; returns (task id they held, exit code) for each."""
        dead = []
        for worker_id, proc in list(self.procs.items()):
            if not proc.is_alive():
                dead.append((self.current.pop(worker_id), proc.exitcode))
                self.deadline.pop(worker_id, None)
                del self.procs[worker_id]
                self._spawn()
        return dead

    def idle(self) -> bool:
        return all(task is None for task in self.current.values())

    def close(self) -> None:
        for _ in self.procs:
            self.tasks.put(None)
        deadline = time.monotonic() + 5
        for proc in self.procs.values():
            proc.join(timeout=max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=1)
            if proc.is_alive():  # stopped or stuck in the kernel: SIGTERM waits, SIGKILL not
                proc.kill()
                proc.join(timeout=1)
        for q in (self.tasks, self.results):
            q.cancel_join_thread()
            q.close()


class IngestRun:
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
        self.states: dict[int, _TrackState] = {}
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
            # the library's own genre model, on the new embeddings only (no audio again)
            remember_shipped_threshold(self.catalog)
            self.summary.library_genres = apply_library_genres(self.catalog)
        self.summary.wall_seconds = time.monotonic() - started
        return self.summary

    def _analyse(self, tasks: list[Task]) -> None:
        from embeddings.inference import Predictor, op_threads

        self.model = loaded(self.model)  # torch and the network, now that there is work
        self.predictor = Predictor(self.model, self.options.device, self.options.precision)
        self.summary.inference = self.predictor.describe()
        self.summary.analysis = describe_analysis(self.options.analysis_seconds)
        tasks = [replace(t, analysis_s=self.options.analysis_seconds) for t in tasks]
        threads = max(1, self.options.inference_threads)
        pool = _WorkerPool(
            max(1, self.options.workers),
            self.model.frontend.to_dict(),
            self.plan.moved_hashes,
            self.options.stall_seconds,
            self.catalog.paths.root if self.options.yield_to_service else None,
        )
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="sonic-infer")
        self.threads = threads
        watch = BusyWatch(self.catalog.paths.root) if self.options.yield_to_service else None
        self.yielder = Yielder(watch, threads)
        previous_threads = op_threads(1) if threads > 1 else None
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

    def _note_unreadable_folders(self) -> None:
        """Say which folders were out of sight (after ``start``, so a progress bar shows it)."""
        for folder, reason in self.plan.unreadable_folders:
            self.progress.note(f"skipped folder: {folder}: {reason}")

    def _drain(self, pool: _WorkerPool) -> None:
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

    def _feed(self, pool: _WorkerPool, ahead: int) -> None:
        """Hand planned files to the decoders, keeping ``ahead`` of them in flight.

        Files go out as decoders free up rather than all at once, so that on a
        shared catalog each is claimed only when this ingest is about to start it,
        and concurrent ingests split the library instead of one claiming it all.
        """
        while self.pending and len(self.states) < ahead:
            task = self.pending.popleft()
            if not self._claim(task):
                self.progress.advance(0.0)
                continue
            self.states[task.task_id] = self._new_state(task)
            pool.submit(task)

    def _claim(self, task: Task) -> bool:
        """Whether this ingest should analyse ``task`` (always, on SQLite).

        On PostgreSQL: False when another ingest holds the file's claim, or when,
        claim in hand, the row shows another ingest already did it since the plan.
        """
        if not self.claims.shared:
            return True
        if not self.claims.path(task.path):
            self.summary.claimed_elsewhere += 1
            return False
        row = self.catalog.track_by_path(task.path)
        if row is None:
            return True
        if _done(row, Path(task.path), self.model.model_id):
            self.summary.skipped += 1
            return False
        self.plan.task_rows.setdefault(task.task_id, row.id)  # a row another ingest added
        return True

    def _vanished_row(self, content_hash: str) -> int | None:
        """A vanished row with this content for a moved file to take over, claimed."""
        return self.plan.moves.claim(content_hash, available=self._may_take_over)

    def _may_take_over(self, row_id: int) -> bool:
        """Whether this ingest may move vanished row ``row_id`` (always, on SQLite).

        On PostgreSQL the row's claim is taken here, and a row another ingest moved
        meanwhile is turned down.
        """
        if not self.claims.row(row_id):
            return False
        return not self.claims.shared or self._still_missing([row_id]) == [row_id]

    def _still_missing(self, row_ids: list[int]) -> list[int]:
        """Rows whose file is still gone and that no other ingest is moving (PostgreSQL)."""
        paths = self.catalog.paths_of([i for i in row_ids if self.claims.row(i)])
        return [i for i, path in paths.items() if not os.path.lexists(path)]

    # -- messages from workers -----------------------------------------------------------

    def _stalled_reason(self) -> str:
        return (
            f"reading or decoding made no progress for {self.options.stall_seconds:g} s; "
            "the decoder was stopped (a hung decoder or an unresponsive disk)"
        )

    def _handle(self, message: Message, pool: _WorkerPool) -> None:
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

    def _reused_by_hash(self, state: _TrackState, pool: _WorkerPool) -> None:
        task, facts = state.task, state.facts
        del self.states[task.task_id]
        row_id = self.plan.task_rows.get(task.task_id)
        if row_id is None:  # a new path: claim a vanished track with this content
            row_id = self._vanished_row(facts.content_hash)
            if row_id is None:  # another copy already claimed it: analyse this one
                retry = replace(task, expected_hash=None, allow_move=False)
                self.states[task.task_id] = self._new_state(retry)
                pool.submit(retry)
                return
        else:
            self.plan.moves.keep(row_id)
        self.catalog.touch(row_id, facts)
        self.summary.reused += 1
        self.progress.advance(0.0)

    def _reuse(self, row_id: int, path: Path) -> None:
        try:
            facts = file_facts(path)
        except OSError:  # vanished or became a fifo since the plan: it stays missing
            return
        self.catalog.touch(row_id, facts)
        self.plan.moves.keep(row_id)
        self.summary.reused += 1

    # -- inference and recording ------------------------------------------------------------

    def _new_state(self, task: Task) -> _TrackState:
        window = None
        if self.options.heatmaps:
            window = BestWindowTracker(len(self.model.genres), self.options.heatmap_segments)
        return _TrackState(task, window=window)

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

    def _maybe_finish(self, task_id: int) -> None:
        state = self.states.get(task_id)
        if state is None or state.end is None:
            return
        end = state.end
        audio, n_segments, warning, overview = end.audio, end.n_segments, end.warning, end.overview
        if state.inferred < n_segments:
            return
        order = sorted(state.probs)
        seg_probs = np.concatenate([state.probs[k] for k in order])
        if not (np.isfinite(seg_probs).all() and np.isfinite(state.embedding_sum).all()):
            # Never let NaN reach SQLite (NOT NULL on probabilities ended whole runs)
            # or FAISS: whatever caused it, it is this track's failure, not the run's.
            self._fail(task_id, NON_FINITE_OUTPUT, audio)
            return
        del self.states[task_id]
        from embeddings.aggregation import aggregate, l2_normalise

        probabilities = aggregate(seg_probs, self.options.aggregation)
        analysis = Analysis(
            model_id=self.model.model_id,
            genres=self.model.genres,
            probabilities=probabilities,
            embedding=l2_normalise((state.embedding_sum / n_segments).astype(np.float32)),
            segment_probabilities=seg_probs,
            segment_seconds=self.model.frontend.segment_seconds,
            segment_embeddings=np.concatenate([state.segment_embeddings[k] for k in order]),
            segment_starts=np.asarray(state.segment_starts) if state.segment_starts else None,
            warning=warning,
            overview=overview,
        )
        if state.window is not None:
            analysis.explanation = self._explain(state, int(np.argmax(probabilities)))
        self._record(task_id, state, audio, analysis)

    def _record(
        self, task_id: int, state: _TrackState, audio: AudioFacts, analysis: Analysis
    ) -> None:
        """Commit one analysed track, in one transaction (the Ray driver's writer too)."""
        self.catalog.record_analysis(
            state.facts, state.tags or Tags(), audio, analysis, self.plan.task_rows.get(task_id)
        )
        self.summary.analysed += 1
        self.summary.audio_seconds += audio.duration_s
        self.progress.advance(audio.duration_s)

    def _heatmaps_dir(self) -> Path:
        """Where Grad-CAM pictures go: the data directory (shared, under Ray)."""
        return self.catalog.paths.heatmaps

    def _explain(self, state: _TrackState, genre_index: int) -> Explanation:
        """Grad-CAM for the predicted genre over the track's most confident window."""
        from embeddings.gradcam import band_focus
        from embeddings.heatmap_image import render_heatmap_png

        config = self.model.frontend
        first, window = state.window.best(genre_index)
        features = window.astype(np.float32)
        cam = self.predictor.grad_cam(features, genre_index)
        focus = band_focus(cam, config)
        starts = state.segment_starts
        start = starts[first] if starts else first * config.segment_seconds
        end = start + len(window) * config.segment_seconds
        genre = self.model.genres[genre_index]
        png = render_heatmap_png(
            np.concatenate(list(features), axis=1),
            np.concatenate(list(cam), axis=1),
            config,
            start,
            f"Grad-CAM for '{genre}': {Path(state.task.path).name}",
        )
        path = heatmap_file(self._heatmaps_dir(), state.facts.content_hash, self.model.model_id)
        atomic_write(path, png, parents=True)
        return Explanation(str(path), genre, start, end, focus.as_dict())

    def _fail(self, task_id: int, reason: str, audio: AudioFacts | None = None) -> None:
        state = self.states.pop(task_id)
        facts = state.facts or _facts_without_hash(Path(state.task.path))
        if facts is not None:
            self.catalog.record_failure(
                facts, reason, state.tags, audio, self.plan.task_rows.get(task_id)
            )
        self.summary.failed.append((state.task.path, reason))
        self.progress.note(f"failed: {state.task.path}: {reason}")
        self.progress.advance(0.0)

    def _maybe_save_index(self) -> None:
        if time.monotonic() - self._last_save >= INDEX_SAVE_SECONDS:
            self.catalog.save_index()
            self._last_save = time.monotonic()


def _done(row: Track, path: Path, model_id: str) -> bool:
    """Whether ``row`` already records the file at ``path`` as it is now (see scan)."""
    try:
        stat = path.stat()
    except OSError:
        try:
            stat = os.lstat(path)
        except OSError:
            return False
    if (row.size, row.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
        return False
    if row.status == TrackStatus.FAILED:
        return True
    return row.status == TrackStatus.OK and row.embedding is not None and row.model_id == model_id


def _facts_without_hash(path: Path) -> FileFacts | None:
    """Facts to record a failure under when no worker sent any (never opens the file)."""
    try:
        stat = path.stat()
    except OSError:
        try:
            stat = os.lstat(path)  # a dangling link: keyed as the plan keys it
        except OSError:
            return None
    return FileFacts(str(path), stat.st_size, stat.st_mtime_ns, None, path.suffix.lower()[1:])


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
