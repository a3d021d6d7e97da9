"""``sonic ingest --ray``: the plan made here, the analysis spread over a Ray cluster.

The driver is a local :class:`~ingest.pipeline.IngestRun` in everything but where
the analysis happens: it takes the catalog lock, plans (same incremental rules:
unchanged files skipped unopened, changed ones hashed, moves recognised), restores
and marks missing exactly as a local run. Only the files the plan says need work
go to the cluster, through Ray Data: ``map_batches`` over a pool of stateful actors
(:class:`~ingest.ray_actor.TrackAnalyser`), each loading the model once: one
actor per node holding all its CPUs, or with ``gpus`` two pools, one GPU actor per
GPU and, on the CPUs those do not hold, one CPU actor per CPU (``cpu_actors=False``:
GPU actors only); see :meth:`DistributedIngestRun._run_round` for how they share
the files. Results stream back in batches and each finished track is committed
here through the local run's own writer, one transaction per track. A driver
killed or a node lost therefore leaves only whole tracks behind, and the next
run's plan picks up the rest without duplicates.

Every node must read the library at the same path (a shared mount) and write to
the same data directory (heatmaps). A file a node cannot see is recorded as a
failure naming the node, and is tried again on the next run (it was never read).
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from catalog.claims import rows_by_path
from catalog.store import Catalog
from embeddings.model_handle import LazyModel, shippable, untrained_warning
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

# Files per actor call, per CPU the actor holds. An actor drains its decoders and
# inference threads at the end of each call (the call returns its batch's results),
# so every batch ends with a core idle for about one track; at 4 files per CPU that
# cost a 2-CPU actor 1.31x a local run's wall time on 4 audio-hours, at 16 1.16x
# (bench/scale.py --files-per-batch, docs/benchmarks.md). Larger still would make the
# progress bar move in bigger steps and a lost node redo more.
FILES_PER_BATCH = 16
GPU_ACTOR_DECODERS = 4  # decode processes feeding each GPU actor (and the CPUs it holds)
# How long the GPU actors' CPUs and GPUs may take to be reserved (a placement group)
# before the run fails rather than waits: on an idle cluster it takes well under a second.
RESERVE_SECONDS = 300.0


class DistributedIngestError(RuntimeError):
    """The cluster could not finish the run; what was committed stays committed."""


def _cause(exc: BaseException) -> str:
    """What went wrong on the cluster, in one line a user can read.

    Ray's error for an actor whose constructor raised carries the whole remote
    traceback in its message (2.7 kB for a checkpoint that changed); its last line is
    the error the actor raised, which is what the user needs. The traceback stays
    in the chained exception and the worker's log.
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # Ray colours the actor's name
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and any(line.startswith('File "') for line in lines):
        first = lines[0].split(",")[0]  # "The actor died because of an error raised in ..."
        return f"{type(exc).__name__}: {first}: {lines[-1]}"
    return f"{type(exc).__name__}: {text}"


@dataclass
class RayOptions:
    """Where and how the analysis runs: ``address`` as ``ray.init`` takes it, or ``auto``."""

    address: str = "auto"
    gpus: int = 0  # GPU actors, one GPU each; 0: CPU actors only
    # CPU actors of one CPU each; default: one actor per node holding all its CPUs
    # (with gpus: one per CPU the GPU actors leave)
    actors: int | None = None
    files_per_batch: int = FILES_PER_BATCH
    # with gpus: CPU actors as well, on the CPUs the GPU actors do not hold (False: GPU only)
    cpu_actors: bool = True


@dataclass
class _Pool:
    """One ``map_batches`` worth of actors: how many, what each holds, how each runs."""

    kind: str  # "gpu" or "cpu": the Outcome.actor and the Dispenser's name for the pool
    size: int
    num_cpus: float
    num_gpus: float
    options: IngestOptions


class _Retries:
    """Stands in for the worker pool in ``_reused_by_hash``: copies to analyse after all."""

    def __init__(self) -> None:
        self.tasks: list[Task] = []

    def submit(self, task: Task) -> None:
        self.tasks.append(task)


def _join_hint(env: Mapping[str, str], home: Path | None = None) -> str:
    """What to try when joining failed and the cluster may want a token.

    Ray 2.60's ``ray start --head`` turns token authentication on by itself when
    ``~/.ray/auth_token`` exists on the head (a local ``ray.init()`` once wrote one),
    but a client sends the token only when ``RAY_AUTH_MODE=token`` is set: the join
    then fails with nothing but "Failed to connect" (the GCS logs "Missing
    authorization header"). Said only where that may be the cause.
    """
    if env.get("RAY_AUTH_MODE"):
        return ""
    token = (home or Path.home()) / ".ray" / "auth_token"
    if not (token.is_file() or env.get("RAY_AUTH_TOKEN")):
        return ""
    return (
        ". If the cluster uses token authentication (Ray turns it on when the head has "
        "~/.ray/auth_token), run with RAY_AUTH_MODE=token and the head's token in "
        "~/.ray/auth_token or RAY_AUTH_TOKEN"
    )


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
                f"cannot join the Ray cluster at {address}: {exc}{_join_hint(os.environ)}"
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
        self.actor_kinds: Counter[str] = Counter()  # files per kind of actor (gpu, cpu)
        self.unanswered = 0
        self.notes: list[str] = []  # what the actors said about themselves (a CPU fallback)

    def _analyse(self, tasks: list[Task]) -> None:
        ray = connect(self.ray_options.address)
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
        # the checkpoint's bytes where the network is not loaded here: the driver then
        # never imports torch, and each actor loads the network as a local run would
        shipped = shippable(self.model)
        model_ref = ray.put(shipped)
        if isinstance(shipped, LazyModel) and not shipped.trained:
            # only the actors load it, and their warnings reach no one: say it here
            self.progress.note(f"warning: {untrained_warning(shipped.model_id)}")
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
                f"the Ray cluster could not finish: {_cause(exc)}"
            ) from exc
        finally:
            self.progress.close()
            self.summary.nodes = dict(self.nodes)
            self.summary.ray_actors = dict(self.actor_kinds)
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
        """Analyse ``tasks`` on the cluster's actor pools, committing results as they come.

        One pool (CPU actors, or GPU actors only) is one ``map_batches``. A mixed run
        has two pools with different resources, and ``map_batches`` takes one compute
        strategy, so each pool gets its own ``map_batches`` over the *whole* plan (the
        CPU pool's in reverse order) and the two result streams are joined with
        ``union``, which Ray Data runs as one streaming execution read by one loop here.
        Which pool analyses a file is decided when an actor reaches it, by a small
        :class:`~ingest.ray_actor.Dispenser` actor: the first pool there gets it. Why
        not split the plan in two up front (``split``, or two datasets sized by
        throughput): a GPU actor's speed against a CPU actor's is not known before the
        run (a real GPU, a logical one without CUDA, decoding-bound or not), and a
        wrong guess leaves one pool idle while the other has a queue. Why not a queue
        of batches fed by the driver to hand-made actors: Ray Data already restarts
        lost actors and runs their batches again, and that is the node-loss handling
        the one-pool run relies on; files belong to a pool, so a batch run again goes
        to the same files. Everything else is as in a one-pool run: claims are taken
        before (``_claimed``), every result is committed here one track per
        transaction, and a batch a restarted actor did twice is committed once.
        """
        from ray.data import ActorPoolStrategy

        from ingest.ray_actor import TrackAnalyser

        for task in tasks:
            self.states[task.task_id] = _TrackState(task)
        items = [{"task": pickle.dumps(task)} for task in tasks]
        pools = actor_pools(self.options, self.ray_options, ray.cluster_resources(), ray.nodes())
        constructor = {
            "model_ref": [model_ref],
            "heatmaps_dir": str(self._heatmaps_dir().absolute()),
            "moved_hashes": self.plan.moved_hashes,
        }
        dispenser = _start_dispenser(ray) if len(pools) > 1 else None
        reserved = None
        try:
            streams = []
            for number, pool in enumerate(pools):
                remote_args: dict = {}
                if pool.kind == "gpu" and dispenser is not None:
                    # CPU actors must not take the CPUs a GPU actor needs on its node
                    # (it would wait for them for good): reserve those first
                    reserved = _reserve(ray, pool)
                    remote_args["scheduling_strategy"] = _in_group(reserved)
                # a batch keeps each of an actor's decode workers busy with
                # files_per_batch files; no more actors than batches (an idle actor
                # still holds its CPUs)
                per_batch = _files_per_call(
                    len(items), pool.size, self.ray_options.files_per_batch * int(pool.num_cpus)
                )
                batches = math.ceil(len(items) / per_batch)
                ordered = items if number == 0 else items[::-1]
                dataset = ray.data.from_items(ordered, override_num_blocks=batches)
                with warnings.catch_warnings():
                    # Ray 2.60 deprecates ray_remote_args but has no named parameter
                    # for a scheduling strategy, which the GPU pool needs; pyproject
                    # keeps Ray below 2.64, where ray_remote_args is to go
                    warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
                    mapped = dataset.map_batches(
                        TrackAnalyser,
                        batch_size=per_batch,
                        batch_format="numpy",
                        # one call at a time per actor: a call queued behind a running
                        # one would wait there while another actor sits idle at the end
                        compute=ActorPoolStrategy(
                            size=min(pool.size, batches), max_tasks_in_flight_per_actor=1
                        ),
                        num_cpus=pool.num_cpus,
                        num_gpus=pool.num_gpus,
                        fn_constructor_kwargs={
                            **constructor,
                            "options": asdict(pool.options),
                            "kind": pool.kind,
                            "dispenser": [dispenser] if dispenser is not None else None,
                        },
                        **remote_args,
                    )
                streams.append(mapped)
            results = streams[0].union(*streams[1:]) if len(streams) > 1 else streams[0]
            # no prefetch: with Ray Data's default of one batch, each call's results
            # reached this loop only when the next call had finished, so the progress
            # bar ran a call behind and a killed driver lost a call more
            for batch in results.iter_batches(
                batch_size=None, batch_format="numpy", prefetch_batches=0
            ):
                for blob in batch["outcome"]:
                    self._apply_outcome(pickle.loads(blob), retries)
                self._maybe_save_index()
        finally:
            if reserved is not None:
                ray.util.remove_placement_group(reserved)
            if dispenser is not None:
                ray.kill(dispenser)
        self.unanswered += len(self.states)  # none expected: the next run does them
        self.states.clear()

    def _apply_outcome(self, outcome: Outcome, retries: _Retries) -> None:
        """Commit what one node sent, through the local run's writers."""
        state = self.states.get(outcome.task_id)
        if state is None:  # a batch a restarted actor did again: already committed
            return
        self.nodes[outcome.node] += 1
        self.actor_kinds[outcome.actor] += 1
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


def actor_pools(
    options: IngestOptions, ray_options: RayOptions, resources: dict, nodes: list[dict]
) -> list[_Pool]:
    """The actor pools: their size, the CPUs and GPUs each actor holds, its options.

    ``resources`` and ``nodes`` are ``ray.cluster_resources()`` and ``ray.nodes()``.
    Pools are sized from what the cluster has, never more: Ray waits for ever for an
    actor no node can hold, so a pool too big would hang the run. Where the GPU
    actors hold every CPU there is no CPU pool.
    """
    base = replace(options, inference_threads=1)
    cpu_device = options.device if options.device not in (None, "auto") else "cpu"
    cpu_options = replace(base, workers=1, device=cpu_device)
    if ray_options.gpus:
        have = int(resources.get("GPU", 0))
        if have < ray_options.gpus:
            raise DistributedIngestError(
                f"--ray-gpus {ray_options.gpus}: the Ray cluster has {have} GPU(s)"
            )
        device = options.device if options.device not in (None, "auto") else "cuda"
        cpus = _cpus_beside_each_gpu(nodes)
        gpu_options = replace(base, workers=max(1, int(cpus)), device=device)
        pools = [_Pool("gpu", ray_options.gpus, cpus, 1.0, gpu_options)]
        left = _cpus_left(nodes, ray_options.gpus * cpus)
        if ray_options.cpu_actors and left >= 1:
            size = min(left, ray_options.actors or left)
            # a CPU actor always analyses on the CPU: the GPUs are the GPU actors'
            pools.append(_Pool("cpu", size, 1.0, 0.0, replace(cpu_options, device="cpu")))
        return pools
    cpus = int(resources.get("CPU", 0))
    if cpus < 1:
        raise DistributedIngestError("the Ray cluster has no CPU to run analysis on")
    if ray_options.actors:  # as asked: that many actors of one CPU each
        return [_Pool("cpu", ray_options.actors, 1.0, 0.0, cpu_options)]
    share, actors = _cpu_actor_shape(nodes)
    # one actor per node (or per `share` CPUs of a bigger node), shaped as a local
    # run on that many cores: a decode worker and an inference thread per CPU
    node_options = replace(cpu_options, workers=share, inference_threads=share)
    return [_Pool("cpu", actors, float(share), 0.0, node_options)]


def _files_per_call(files: int, actors: int, most: int) -> int:
    """Files per actor call: at most ``most``, and few enough that each actor gets two.

    The calls are handed out as actors finish their last, so the run ends when the
    slowest actor's last call does; a short run cut into fewer calls than two per actor
    leaves some actors idle for a whole call while others work through theirs.
    """
    return max(1, min(most, math.ceil(files / (2 * max(1, actors)))))


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
    counts = [c for c in _whole_cpus(nodes) if c >= 1]
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


def _cpus_left(nodes: list[dict], held: float) -> int:
    """Whole CPUs of the alive nodes beyond the ``held`` ones: how many 1-CPU actors fit.

    Each node's CPUs are counted whole (a 1-CPU actor cannot use two halves on two
    nodes); the GPU actors hold whole CPUs, so the difference is exact.
    """
    return max(0, int(sum(_whole_cpus(nodes)) - held))


def _whole_cpus(nodes: list[dict]) -> list[int]:
    """Each alive node's CPUs, counted whole (an actor's CPUs are all on one node)."""
    return [
        math.floor(node.get("Resources", {}).get("CPU", 0.0)) for node in nodes if node.get("Alive")
    ]


def _start_dispenser(ray):
    """The :class:`~ingest.ray_actor.Dispenser` of a mixed run, on the driver's own node.

    It holds no CPU (its calls are tiny), so it never competes with an actor for one,
    and it lives where the driver does: a lost worker node cannot take it away.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from ingest.ray_actor import Dispenser

    here = ray.get_runtime_context().get_node_id()
    return (
        ray.remote(Dispenser)
        .options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True))
        .remote()
    )


def _reserve(ray, pool: _Pool):
    """A placement group holding each GPU actor's GPU and CPUs, or a clear failure."""
    from ray.util.placement_group import placement_group

    bundles = [{"CPU": pool.num_cpus, "GPU": pool.num_gpus} for _ in range(pool.size)]
    group = placement_group(bundles, strategy="SPREAD")
    try:
        ray.get(group.ready(), timeout=RESERVE_SECONDS)
    except Exception as exc:
        ray.util.remove_placement_group(group)
        raise DistributedIngestError(
            f"could not reserve {pool.size} GPU(s) with {pool.num_cpus:g} CPU(s) each on the "
            f"Ray cluster within {RESERVE_SECONDS:.0f} s ({type(exc).__name__}): "
            "is it busy with other work?"
        ) from exc
    return group


def _in_group(group):
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return PlacementGroupSchedulingStrategy(group, placement_group_capture_child_tasks=False)


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
