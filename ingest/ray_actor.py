"""What runs on a Ray node: the local pipeline's analysis, minus the catalog.

Each actor of the pool is one :class:`~ingest.pipeline.IngestRun` without a catalog.
It keeps what a local run has: its own decode worker processes (so a decoder that
crashes or hangs on a hostile file costs that file, not the actor), the network
loaded once per actor, segments of several tracks batched into one call, Grad-CAM
on the best window, the heatmap PNG written to the shared data directory. Where a
local run would commit a track, the actor hands back an :class:`Outcome`; the driver
commits it through the same writer (:mod:`ingest.distributed`). Nothing here writes
to the catalog, so a node that dies takes no half-written track with it.

This module imports no Ray at import time: Ray calls the class, the class never
calls Ray except to fetch the model it was given. Nor torch: the driver imports it
for the class it hands Ray, and loads no network (the actors do).
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from catalog.records import Analysis, AudioFacts, Explanation, FileFacts, Tags
from embeddings.model_handle import loaded
from ingest.pipeline import IngestOptions, IngestRun, _one_blas_thread, _TrackState, _WorkerPool
from ingest.worker import Task

if TYPE_CHECKING:  # torch: the driver imports this module for the class it hands Ray
    from embeddings.checkpoint import GenreModel


@dataclass
class Outcome:
    """One file's result, as a local run would have recorded it.

    ``kind``: ``ok`` (``analysis`` is set), ``fail`` (``reason``), or ``reusable``
    (the content hash matched what the plan offered: the driver decides whether it
    is an unchanged file or a move, as a local run does).
    """

    kind: str
    task_id: int
    node: str
    facts: FileFacts | None = None
    tags: Tags | None = None
    audio: AudioFacts | None = None
    analysis: Analysis | None = None
    reason: str | None = None
    # the node could not see the path at all: the library is not mounted there
    node_unreadable: bool = False
    inference: str | None = None  # the path the network ran on, in words
    note: str | None = None  # what the driver should say once about this actor (a fallback)
    actor: str = "cpu"  # the kind of actor that analysed the file: "gpu" or "cpu"


def node_name() -> str:
    """How reasons and summaries name this node: host, address and Ray node id.

    The id tells apart nodes that share a host (a test cluster, several raylets).
    """
    host = socket.gethostname()
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():  # not in Ray: asking would start Ray
        return host
    address = ray.util.get_node_ip_address()
    node_id = ray.get_runtime_context().get_node_id()
    return f"{host} ({address}, node {node_id[:8]})"


def usable_device(requested: str | None, node: str) -> tuple[str | None, str | None]:
    """The device this actor can run on, and a note when it is not the one asked for.

    A GPU actor is placed by Ray's bookkeeping of GPUs, which a node declares
    (``ray start --num-gpus``) whether or not it has a working CUDA: a driver
    missing, a CPU-only torch, ``CUDA_VISIBLE_DEVICES`` hiding the card. Rather
    than failing every file (or the actor, which Ray would restart for ever), the
    actor analyses on the CPU, where the results are the same, and says so.
    """
    if not requested or not requested.startswith("cuda"):
        return requested, None
    import torch

    if torch.cuda.is_available():
        return requested, None
    if torch.version.cuda is None:
        why = "this node's torch is built without CUDA"
    else:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        why = f"torch sees no CUDA device (CUDA_VISIBLE_DEVICES={visible!r})"
    return "cpu", (
        f"node {node}: Ray gave this actor a GPU but CUDA is not usable there ({why}); "
        "it analyses on the CPU instead (same results, slower)"
    )


class NodeRun(IngestRun):
    """An :class:`IngestRun` whose finished tracks become :class:`Outcome` objects."""

    def __init__(self, model: GenreModel, options: IngestOptions, heatmaps_dir: Path) -> None:
        super().__init__(catalog=None, model=model, options=options)  # type: ignore[arg-type]
        self.heatmaps = Path(heatmaps_dir)
        self.node = node_name()
        self.outcomes: list[Outcome] = []
        self._heatmap_problems: dict[int, str] = {}

    def _heatmaps_dir(self) -> Path:
        return self.heatmaps

    def _maybe_save_index(self) -> None:
        """No catalog here: the driver saves the index it keeps."""

    def _explain(self, state: _TrackState, genre_index: int) -> Explanation | None:
        """Grad-CAM as locally; a data directory this node cannot write costs the picture."""
        try:
            return super()._explain(state, genre_index)
        except OSError as exc:
            self._heatmap_problems[state.task.task_id] = (
                f"no heatmap: node {self.node} cannot write to the data directory "
                f"{self.heatmaps} ({exc.strerror or exc}); it must be shared by every node"
            )
            return None

    def _record(
        self, task_id: int, state: _TrackState, audio: AudioFacts, analysis: Analysis
    ) -> None:
        problem = self._heatmap_problems.pop(task_id, None)
        if problem:
            analysis.warning = "; ".join(w for w in (analysis.warning, problem) if w)
        self.outcomes.append(
            Outcome("ok", task_id, self.node, state.facts, state.tags, audio, analysis)
        )

    def _fail(self, task_id: int, reason: str, audio: AudioFacts | None = None) -> None:
        state = self.states.pop(task_id)
        self.outcomes.append(
            Outcome(
                "fail", task_id, self.node, state.facts, state.tags, audio, reason=reason,
                node_unreadable=not os.path.lexists(state.task.path),
            )
        )  # fmt: skip

    def _reused_by_hash(self, state: _TrackState, pool: _WorkerPool) -> None:
        del self.states[state.task.task_id]
        self.outcomes.append(Outcome("reusable", state.task.task_id, self.node, state.facts))


class Dispenser:
    """Hands each file to one of two actor pools that both walk the whole plan.

    A mixed run (:mod:`ingest.distributed`) gives the GPU pool and the CPU pool the
    same files, in opposite orders; before analysing a batch an actor asks here which
    of its files are its pool's. The first pool to reach a file gets it, so each pool
    does as much as its speed allows and the two meet wherever that is, with no
    estimate of either's throughput. A file belongs to a *pool*, not an actor: when
    Ray runs a lost actor's batch again on another actor of the same pool, that actor
    is granted the same files, so Ray Data's retries keep working as in a one-pool run.
    Run as one Ray actor on the driver's node (it dies only with the driver).
    """

    def __init__(self) -> None:
        self.owners: dict[int, str] = {}

    def claim(self, pool: str, task_ids: list[int]) -> list[int]:
        """The ids among ``task_ids`` that ``pool`` analyses (new ones become its own)."""
        return [t for t in task_ids if self.owners.setdefault(t, pool) == pool]

    def counts(self) -> dict[str, int]:
        """Files granted per pool (for tests and notes)."""
        return dict(Counter(self.owners.values()))


class TrackAnalyser:
    """The stateful class Ray Data's ``map_batches`` runs as a pool of actors.

    Built once per actor: the model comes from the object store (the driver's own
    copy, so every node runs the very weights the catalog records), the network is
    prepared for inference and the decode workers are started. Each call takes a
    batch of pickled :class:`~ingest.worker.Task` objects and returns one pickled
    :class:`Outcome` per task. In a mixed run (``dispenser`` given) it analyses only
    the tasks the :class:`Dispenser` grants its ``kind`` of pool, and returns nothing
    for the others (the other pool's).
    """

    def __init__(
        self,
        model_ref: list,
        options: dict,
        heatmaps_dir: str,
        moved_hashes: frozenset[str],
        kind: str = "cpu",
        dispenser: list | None = None,
    ) -> None:
        self.kind = kind
        self.dispenser = dispenser[0] if dispenser else None  # a list: Ray leaves it alone

        # Every decode process is started from one thread that lives as long as the
        # actor: the kernel's parent-death signal (PR_SET_PDEATHSIG, ingest.worker)
        # follows the *thread* that started a process, and Ray may run an actor's
        # constructor and calls on threads that end, killing decoders mid-file
        # ("decoder process died before starting this file").
        self._home = ThreadPoolExecutor(1, thread_name_prefix="sonic-node")
        self._home.submit(self._setup, model_ref, options, heatmaps_dir, moved_hashes).result()

    def _setup(
        self, model_ref: list, options: dict, heatmaps_dir: str, moved_hashes: frozenset[str]
    ) -> None:
        import ray

        from embeddings.inference import Predictor

        # wrapped in a list so Ray does not resolve it early; a LazyModel carrying the
        # checkpoint's bytes (embeddings.model_handle.shippable), or the network itself
        model = loaded(ray.get(model_ref[0]))
        opts = IngestOptions(**options)
        run = NodeRun(model, opts, Path(heatmaps_dir))
        device, self.note = usable_device(opts.device, run.node)
        run.predictor = Predictor(model, device, opts.precision)
        run._start_inference_threads(None)  # as a local run; no service to yield to here
        # NumPy's BLAS on one thread for the actor's life, as a local run has it while
        # it analyses (ingest.pipeline._one_blas_thread): without it OpenBLAS's threads
        # spun on every small product, 3.5 CPU-s of an actor's 20 for 48 tracks
        self._blas = _one_blas_thread()
        self._blas.__enter__()
        self.run = run
        self.inference = run.predictor.describe()
        self.pool = _WorkerPool(
            max(1, opts.workers), model.frontend.to_dict(), moved_hashes, opts.stall_seconds
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._home.submit(self._analyse, batch).result()

    def _analyse(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        run = self.run
        run.outcomes = []
        tasks: list[Task] = [pickle.loads(blob) for blob in batch["task"]]
        if self.dispenser is not None:
            import ray

            mine = set(ray.get(self.dispenser.claim.remote(self.kind, [t.task_id for t in tasks])))
            tasks = [t for t in tasks if t.task_id in mine]
        for task in tasks:
            run.states[task.task_id] = run._new_state(task)
            self.pool.submit(task)
        # An error here is a bug, as in a local run's loop: it ends the run (the driver
        # says so) rather than marking the batch's files failed for good.
        run._drain(self.pool)
        for outcome in run.outcomes:
            outcome.inference, outcome.note, outcome.actor = self.inference, self.note, self.kind
        return {
            "task_id": np.array([o.task_id for o in run.outcomes], dtype=np.int64),
            "outcome": np.array([pickle.dumps(o) for o in run.outcomes], dtype=object),
        }

    def close(self) -> None:
        """Stop the decode workers and give NumPy back its BLAS threads."""
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.close()
            self.pool = None
        blas = getattr(self, "_blas", None)
        if blas is not None:
            self._blas = None
            try:  # from the thread that set it: OpenBLAS ignores a restore from another
                self._home.submit(blas.__exit__, None, None, None).result()
            except RuntimeError:  # the home thread is gone (interpreter exit): no matter
                pass

    def __del__(self) -> None:
        self.close()
