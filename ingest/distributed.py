"""``sonic ingest --ray``: the plan made here, the analysis spread over a Ray cluster.

The driver is a local :class:`~ingest.pipeline.IngestRun` in everything but where
the analysis happens: it takes the catalog lock, plans (same incremental rules:
unchanged files skipped unopened, changed ones hashed, moves recognised), restores
and marks missing exactly as a local run. Only the files the plan says need work
go to the cluster, through Ray Data: ``map_batches`` over a pool of stateful actors
(:class:`~ingest.ray_actor.TrackAnalyser`, one per node holding all its CPUs, or
one per GPU with ``gpus``), each loading the model once. Results stream back in batches and
each finished track is committed here through the local run's own writer, one
transaction per track. A driver killed or a node lost therefore leaves only whole
tracks behind, and the next run's plan picks up the rest without duplicates.

Every node must read the library at the same path (a shared mount) and write to
the same data directory (heatmaps). A file a node cannot see is recorded as a
failure naming the node, and is tried again on the next run (it was never read).
"""

from __future__ import annotations

import logging
import math
import pickle
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from catalog.claims import rows_by_path
from catalog.store import Catalog
from embeddings.model_handle import LazyModel, loaded
from embeddings.windows import describe_analysis
from ingest.lock import HeldLock
from ingest.pipeline import (
    IngestOptions,
    IngestRun,
    IngestSummary,
    ProgressSink,
    _facts_without_hash,
    _TrackState,
)
from ingest.planning import done as _done
from ingest.worker import Task

if TYPE_CHECKING:
    from embeddings.checkpoint import GenreModel
    from ingest.ray_actor import Outcome

FILES_PER_BATCH = 4  # small: results reach the catalog soon, a lost node loses little
GPU_ACTOR_DECODERS = 4  # decode processes feeding each GPU actor (and the CPUs it holds)


class DistributedIngestError(RuntimeError):
    """The cluster could not finish the run; what was committed stays committed."""


@dataclass
class RayOptions:
    """Where and how the analysis runs: ``address`` as ``ray.init`` takes it, or ``auto``."""

    address: str = "auto"
    gpus: int = 0  # GPU actors, one GPU each; 0: CPU actors
    # CPU actors of one CPU each; default: one actor per node holding all its CPUs
    actors: int | None = None
    files_per_batch: int = FILES_PER_BATCH


class _Retries:
    """Stands in for the worker pool in ``_reused_by_hash``: copies to analyse after all."""

    def __init__(self) -> None:
        self.tasks: list[Task] = []

    def submit(self, task: Task) -> None:
        self.tasks.append(task)


def connect(address: str):
    """Join the cluster at ``address`` (or reuse this process's connection); returns ray."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise DistributedIngestError(
            "--ray needs Ray Data: pip install 'sonic-catalog[scale]' (or 'ray[data]')"
        ) from exc
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise DistributedIngestError(
                f"cannot join the Ray cluster at {address}: {exc}"
            ) from exc
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver shows its own bar
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray


class DistributedIngestRun(IngestRun):
    """An :class:`IngestRun` whose analysis runs on a Ray cluster's actors."""

    def __init__(
        self,
        catalog: Catalog,
        model: GenreModel | LazyModel,
        options: IngestOptions | None = None,
        progress: ProgressSink | None = None,
        ray_options: RayOptions | None = None,
    ) -> None:
        super().__init__(catalog, model, options, progress)
        self.ray_options = ray_options or RayOptions()
        self.nodes: Counter[str] = Counter()
        self.unanswered = 0
        self.notes: list[str] = []  # what the actors said about themselves (a CPU fallback)

    def _analyse(self, tasks: list[Task]) -> None:
        ray = connect(self.ray_options.address)
        self.model = loaded(self.model)
        self.summary.analysis = describe_analysis(self.options.analysis_seconds)
        # the analysis budget travels in each task, as in a local run: without it the
        # nodes would decode whole tracks and their embeddings differ from a local run's
        tasks = [replace(t, analysis_s=self.options.analysis_seconds) for t in tasks]
        self.progress.start(len(tasks))
        if self.summary.previous_model_id:
            self.progress.note(
                f"the model changed from {self.summary.previous_model_id} to "
                f"{self.model.model_id}: tracks analysed with the old one are analysed again"
            )
        self._note_unreadable_folders()
        tasks = self._claimed(tasks)
        if not tasks:  # another ingest holds or has done every file: no actor to start
            self.progress.close()
            return
        model_ref = ray.put(self.model)
        try:
            pending = tasks
            while pending:  # a second round only for copies of a move another copy claimed
                retries = _Retries()
                self._run_round(ray, model_ref, pending, retries)
                pending = retries.tasks
            if self.unanswered:
                raise DistributedIngestError(
                    f"the Ray cluster returned no result for {self.unanswered} file(s)"
                )
        except DistributedIngestError:
            raise
        except Exception as exc:  # Ray's own errors: a lost object, an actor that died
            raise DistributedIngestError(
                f"the Ray cluster could not finish: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            self.progress.close()
            self.summary.nodes = dict(self.nodes)
            self.states.clear()

    def _claimed(self, tasks: list[Task]) -> list[Task]:
        """The tasks this run may analyse, claimed (all of them on SQLite).

        On PostgreSQL another ingest, local or on Ray, may be working on the same
        catalog: each file is claimed as a local run claims it (``IngestRun._claim``:
        an advisory lock on the path, then the row read again, here in batches of
        ``catalog.claims.CLAIM_CHUNK`` files), and one held
        elsewhere or finished meanwhile is left out. A local run claims a file just
        before a decoder takes it; a Ray Data dataset is fixed when it is built, so
        here the whole plan is claimed before the actors start, and the claims are
        held until the run ends (``Claims`` closes with the run). A concurrent ingest
        that plans later therefore finds these files claimed and skips them; one that
        started earlier keeps the files it had claimed.
        """
        if not self.claims.shared:
            return tasks
        granted = self.claims.paths([t.path for t in tasks])  # few round trips, not one a file
        mine = [t for t, ok in zip(tasks, granted, strict=True) if ok]
        self.summary.claimed_elsewhere += len(tasks) - len(mine)
        rows = rows_by_path(self.catalog, [t.path for t in mine])
        kept = []
        for task in mine:  # as IngestRun._claim does for one file
            row = rows.get(task.path)
            if row is not None and _done(row, Path(task.path), self.model.model_id):
                self.summary.skipped += 1
                continue
            if row is not None:  # a row another ingest added since the plan
                self.plan.task_rows.setdefault(task.task_id, row.id)
            kept.append(task)
        for _ in range(len(tasks) - len(kept)):
            self.progress.advance(0.0)
        return kept

    def _run_round(self, ray, model_ref, tasks: list[Task], retries: _Retries) -> None:
        from ray.data import ActorPoolStrategy

        from ingest.ray_actor import TrackAnalyser

        actors, num_cpus, num_gpus, actor_options = self._actor_shape(ray)
        # a batch keeps each of an actor's decode workers busy with files_per_batch files
        per_batch = max(1, self.ray_options.files_per_batch) * max(1, int(num_cpus))
        for task in tasks:
            self.states[task.task_id] = _TrackState(task)
        items = [{"task": pickle.dumps(task)} for task in tasks]
        dataset = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / per_batch))
        results = dataset.map_batches(
            TrackAnalyser,
            batch_size=per_batch,
            batch_format="numpy",
            compute=ActorPoolStrategy(size=min(actors, math.ceil(len(items) / per_batch))),
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            fn_constructor_kwargs={
                "model_ref": [model_ref],
                "options": asdict(actor_options),
                "heatmaps_dir": str(self._heatmaps_dir().absolute()),
                "moved_hashes": self.plan.moved_hashes,
            },
        )
        for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
            for blob in batch["outcome"]:
                self._apply_outcome(pickle.loads(blob), retries)
            self._maybe_save_index()
        self.unanswered += len(self.states)  # none expected: the next run does them
        self.states.clear()

    def _actor_shape(self, ray) -> tuple[int, float, float, IngestOptions]:
        """How many actors, the CPUs and GPUs each holds, and the options each runs with."""
        resources = ray.cluster_resources()
        base = replace(self.options, inference_threads=1)
        if self.ray_options.gpus:
            have = int(resources.get("GPU", 0))
            if have < self.ray_options.gpus:
                raise DistributedIngestError(
                    f"--ray-gpus {self.ray_options.gpus}: the Ray cluster has {have} GPU(s)"
                )
            device = self.options.device if self.options.device not in (None, "auto") else "cuda"
            cpus = _cpus_beside_each_gpu(ray.nodes())
            options = replace(base, workers=max(1, int(cpus)), device=device)
            return self.ray_options.gpus, cpus, 1.0, options
        cpus = int(resources.get("CPU", 0))
        if cpus < 1:
            raise DistributedIngestError("the Ray cluster has no CPU to run analysis on")
        device = self.options.device if self.options.device not in (None, "auto") else "cpu"
        if self.ray_options.actors:  # as asked: that many actors of one CPU each
            options = replace(base, workers=1, device=device)
            return self.ray_options.actors, 1.0, 0.0, options
        share, actors = _cpu_actor_shape(ray.nodes())
        # one actor per node (or per `share` CPUs of a bigger node), shaped as a local
        # run on that many cores: a decode worker and an inference thread per CPU
        options = replace(base, workers=share, inference_threads=share, device=device)
        return actors, float(share), 0.0, options

    def _apply_outcome(self, outcome: Outcome, retries: _Retries) -> None:
        """Commit what one node sent, through the local run's writers."""
        state = self.states.get(outcome.task_id)
        if state is None:  # a batch a restarted actor did again: already committed
            return
        self.nodes[outcome.node] += 1
        if outcome.inference and not self.summary.inference:
            self.summary.inference = outcome.inference
        if outcome.note and outcome.note not in self.notes:  # once per actor, not per file
            self.notes.append(outcome.note)
            self.progress.note(outcome.note)
        state.facts, state.tags = outcome.facts, outcome.tags
        if outcome.kind == "ok":
            del self.states[outcome.task_id]
            self._record(outcome.task_id, state, outcome.audio, outcome.analysis)
        elif outcome.kind == "reusable":
            self._reused_by_hash(state, retries)
        elif outcome.node_unreadable and (here := _facts_without_hash(Path(state.task.path))):
            # the driver sees the file the node cannot: a mount missing on that node.
            # The row keeps no mtime, so the next run's plan tries the file again.
            state.facts = replace(here, mtime_ns=-1)
            self._fail(
                outcome.task_id,
                f"node {outcome.node} cannot read this file ({outcome.reason}); every Ray "
                "node must see the library at the same path (a shared mount)",
                outcome.audio,
            )
        else:
            self._fail(outcome.task_id, outcome.reason or "analysis failed", outcome.audio)


def _cpu_actor_shape(nodes: list[dict]) -> tuple[int, int]:
    """The CPUs each CPU actor holds, and how many such actors the cluster has room for.

    Each actor pays a fixed start-up before its first file: a Ray worker process
    importing Ray Data, torch and this project, unpickling the model and building
    the predictor (about 6 CPU-seconds on the 2-core benchmark machine,
    docs/benchmarks.md). One actor per CPU paid that once per CPU; an actor that
    holds a whole node's CPUs, with a decode worker and an inference thread per CPU
    as a local run on that node would have, pays it once per node. Ray Data's pool
    has actors of one size, so the size is the smallest whole CPU count among the
    alive nodes (a bigger node runs several), and the count is how many of them fit.
    """
    counts = [
        int(node["Resources"].get("CPU", 0.0))
        for node in nodes
        if node.get("Alive") and node.get("Resources", {}).get("CPU", 0.0) >= 1
    ]
    if not counts:
        return 1, 1
    share = min(counts)
    return share, sum(c // share for c in counts)


def _cpus_beside_each_gpu(nodes: list[dict]) -> float:
    """The CPUs a GPU actor holds: ``GPU_ACTOR_DECODERS``, or fewer where a GPU node has fewer.

    Each GPU actor runs one decode process per CPU it holds. Asking for more CPUs
    than the GPU nodes have per GPU would leave the actors unscheduled for good (the
    run would hang, not fail), so the ask is capped at the smallest share of CPUs per
    GPU among the alive GPU nodes.
    """
    shares = [
        node["Resources"].get("CPU", 0.0) / node["Resources"]["GPU"]
        for node in nodes
        if node.get("Alive") and node.get("Resources", {}).get("GPU", 0) > 0
    ]
    if not shares:
        return float(GPU_ACTOR_DECODERS)
    return float(min(GPU_ACTOR_DECODERS, math.floor(min(shares))))


def ingest_on_ray(
    roots: Iterable[Path],
    catalog: Catalog,
    model: GenreModel | LazyModel,
    options: IngestOptions | None = None,
    progress: ProgressSink | None = None,
    held: HeldLock | None = None,
    ray_options: RayOptions | None = None,
) -> IngestSummary:
    """Index ``roots`` into ``catalog`` with the analysis on a Ray cluster.

    The same contract as :func:`ingest.pipeline.ingest`; raises
    :class:`DistributedIngestError` when the cluster cannot finish, after every track
    it did finish is committed.
    """
    run = DistributedIngestRun(catalog, model, options, progress, ray_options)
    return run.run(roots, held)
