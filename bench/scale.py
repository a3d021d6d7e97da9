"""Scale benchmark: local ingest against ``--ray`` ingest on 1, 2 and 3 local nodes.

All runs analyse the same corpus into a fresh data directory on the same machine,
so the nodes share its cores: this measures what Ray costs (scheduling, moving
results to the driver, actors per node), not a speed-up. The local run uses the
default options (one decode worker and one inference thread per core); the Ray runs
give the cluster as many logical CPUs as the machine has cores (one node: all of
them; two or more nodes: one CPU each, so three nodes on two cores oversubscribe
by one actor). For each run it reports the wall time of the ingest call (plan,
actor start-up with the model load, analysis, commits; the cluster itself is
started beforehand, as a real one is) and the steady rate between the first and
the last committed track, in audio-minutes per minute.

The machine is shared, so wall time measures its load as much as the code. Each
run therefore also reports the CPU-seconds its whole process tree used (this
process and every process below it: the decode workers of a local run; the GCS,
raylets, workers, actors and their decode processes of a Ray cluster, see
``bench/proc_cpu.py``), over the whole call and over the steady window. The
runs alternate: each repeat is a local run followed by one Ray run per node count,
and a last local run closes the sequence, so every Ray run is compared with the
mean of the local runs just before and just after it (the load drifts). The
summary gives, per node count, the median over the repeats of each ratio: wall
time, steady rate, CPU-seconds per audio-minute (whole call and steady window).
A CPU ratio above 1 is Ray's overhead in CPU, which is what the 15 % target is
about when all nodes share two cores.

    python bench/corpus.py /tmp/scale-corpus --tracks 16 --seconds 60 --format flac
    nice -n 10 python bench/scale.py /tmp/scale-corpus --nodes 1 2 3 --repeats 3 \
        --json /tmp/scale.json

With ``--cli`` every run is instead the command a user types, ``sonic ingest CORPUS
--json`` (plus ``--ray ADDRESS`` for a Ray run), as a child process on a fresh data
directory: the local run then pays, as it does for a user, for importing torch and
loading the model, which the in-process local run finds already done (this process
loaded the model once for all runs). The cluster is still started here beforehand,
so its processes are in the measured tree; the steady window needs per-track times,
which a child process does not report, so it is left out.

    python bench/scale.py /tmp/scale-corpus --cli --nodes 1 2 3 --repeats 2 --no-catalog

If ``bench/scale_catalog.py`` (PostgreSQL against SQLite writes and ``similar`` at
100k tracks) is present it is run afterwards, unless ``--no-catalog``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.proc_cpu import TreeCpu  # noqa: E402
from catalog.store import Catalog  # noqa: E402
from embeddings.checkpoint import UntrainedModelWarning, load_model  # noqa: E402
from ingest.pipeline import IngestOptions, ProgressSink, ingest  # noqa: E402


class Clock(ProgressSink):
    """Times each committed track, for the steady rate."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.audio: list[float] = []

    def advance(self, audio_seconds: float) -> None:
        self.times.append(time.monotonic())
        self.audio.append(audio_seconds)

    def steady_rate(self) -> float | None:
        """Audio-minutes per minute from the first committed track to the last."""
        if len(self.times) < 3:
            return None
        span = self.times[-1] - self.times[0]
        return sum(self.audio[1:]) / span if span > 0 else None


def _measure(label: str, corpus: Path, work: Path, model, run) -> dict:
    data_dir = work / label.replace(" ", "-")
    clock = Clock()
    with Catalog(data_dir) as catalog, TreeCpu(0.5) as cpu:
        started = time.monotonic()
        summary = run(catalog, clock)
        wall = time.monotonic() - started
    shutil.rmtree(data_dir, ignore_errors=True)
    assert not summary.failed, summary.failed
    audio_min = summary.audio_seconds / 60
    steady_cpu = None
    if len(clock.times) >= 3:
        steady_audio_min = sum(clock.audio[1:]) / 60
        steady_cpu = (cpu.at(clock.times[-1]) - cpu.at(clock.times[0])) / steady_audio_min
    return _result(
        label, summary.analysed, audio_min, wall, cpu, len(summary.nodes),
        clock.steady_rate(), steady_cpu,
    )  # fmt: skip


def _result(
    label: str, tracks: int, audio_min: float, wall: float, cpu: TreeCpu, nodes: int,
    steady_rate: float | None = None, steady_cpu: float | None = None, **extra,
) -> dict:  # fmt: skip
    """One run's figures, as every mode reports them (printed as a JSON line too)."""
    result = {
        "run": label,
        "tracks": tracks,
        "audio_minutes": audio_min,
        "wall_s": wall,
        "audio_min_per_min": audio_min * 60 / wall,
        "steady_audio_min_per_min": steady_rate,
        "cpu_s": cpu.total(),
        "cpu_s_per_audio_min": cpu.total() / audio_min,
        "steady_cpu_s_per_audio_min": steady_cpu,
        "processes": cpu.processes(),
        "nodes_used": nodes or None,
        **extra,
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(result), flush=True)
    return result


def _measure_cli(
    label: str, corpus: Path, work: Path, extra: list[str], model=None
) -> dict:  # fmt: skip
    """One ``sonic ingest`` command as a child process, its whole tree's CPU counted.

    ``model``: the catalog starts out remembering the shipped checkpoint as this
    model (what any earlier ingest into it leaves), so the command plans with a
    :class:`~embeddings.model_handle.LazyModel`, as a user's second and later
    ingests do; None: a catalog made by this very command (its first ingest).
    """
    data_dir = work / label.replace(" ", "-")
    if model is not None:
        from embeddings.model_handle import DEFAULT_CHECKPOINT, ModelIdentity

        with Catalog(data_dir) as catalog:
            catalog.remember_checkpoint(DEFAULT_CHECKPOINT, ModelIdentity.of(model).to_dict())
    command = [sys.executable, "-m", "ui.cli", "ingest", str(corpus), "--data-dir",
               str(data_dir), "--no-progress", "--json", *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with TreeCpu(0.5) as cpu:
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
        wall = time.monotonic() - started
    shutil.rmtree(data_dir, ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"{label}: sonic ingest failed ({done.returncode}):\n{done.stderr}")
    summary = json.loads(done.stdout)
    assert not summary["failed"], summary["failed"]
    return _result(
        label, summary["analysed"], summary["audio_hours"] * 60, wall, cpu,
        len(summary["nodes"]), inference=summary["inference"],
    )  # fmt: skip


def _ray_run(
    corpus: Path, work: Path, model, nodes: int, cores: int, settings: str = "lean",
    actors: int | None = None, cli: bool = False, files_per_batch: int | None = None,
    remembered: bool = True, warm: bool = False,
) -> dict:  # fmt: skip
    """One Ray ingest on a fresh local cluster of ``nodes`` nodes.

    ``settings``: ``lean`` starts the head as docs/scaling.md recommends for ``ray
    start`` (``ingest.ray_settings``: no dashboard, no log monitor, no metrics, no
    task events); ``default`` only turns the dashboard off, as this bench did before.
    ``actors``: passed to ``RayOptions`` (None: one actor per node holding its CPUs).
    ``cli``: the ingest is ``sonic ingest --ray`` in a child process (``--cli``).
    ``files_per_batch``: files per actor call per CPU (None: ``RayOptions``' default).
    ``remembered``: see :func:`_measure_cli`. ``warm``: a first, unmeasured ingest of
    two files starts Ray Data's helper actors, which live as long as the cluster:
    what every ingest but a fresh cluster's first finds.
    """
    import ray
    from ray.cluster_utils import Cluster

    from ingest.distributed import RayOptions, ingest_on_ray
    from ingest.ray_settings import lean_env, lean_node_args

    per_node = cores if nodes == 1 else 1
    node = {"num_cpus": per_node, "object_store_memory": 200 * 2**20}
    saved = dict(os.environ)
    os.environ["PYTHONPATH"] = str(REPO)  # the cluster's workers import this tree
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if settings == "lean":
        os.environ.update(lean_env())
        head = lean_node_args(node)
    else:
        head = {**node, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    for _ in range(nodes - 1):
        cluster.add_node(**lean_node_args(node, head=False) if settings == "lean" else node)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    shape = "1-cpu actors" if actors else "node actors"
    label = f"ray {nodes}n x {per_node}cpu {settings} {shape}" + _batches(files_per_batch)
    batching = {} if files_per_batch is None else {"files_per_batch": files_per_batch}
    label += " warm" if warm else ""
    try:
        if warm:
            _warm_up(corpus, work, cluster.address)
        if cli:
            return _measure_cli(
                label, corpus, work, ["--ray", cluster.address], model if remembered else None
            )
        return _measure(
            label, corpus, work, model,
            lambda catalog, clock: ingest_on_ray(
                [corpus], catalog, model, IngestOptions(), clock, None,
                RayOptions(address=cluster.address, actors=actors, **batching),
            ),
        )  # fmt: skip
    finally:
        ray.shutdown()
        cluster.shutdown()
        os.environ.clear()
        os.environ.update(saved)


def _warm_up(corpus: Path, work: Path, address: str) -> None:
    """An unmeasured ``sonic ingest --ray`` of two of the corpus's files."""
    files = sorted(p for p in corpus.rglob("*") if p.is_file())[:2]
    warm = work / "warm-corpus"
    warm.mkdir(exist_ok=True)
    for number, path in enumerate(files):
        shutil.copy(path, warm / f"{number}{path.suffix}")
    data_dir = work / "warm-data"
    command = [sys.executable, "-m", "ui.cli", "ingest", str(warm), "--data-dir",
               str(data_dir), "--no-progress", "--ray", address]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(command, capture_output=True, check=True, env=env, cwd=REPO)
    shutil.rmtree(data_dir, ignore_errors=True)


def _ratio(value: float | None, before: float | None, after: float | None) -> float | None:
    """``value`` against the mean of the local runs on either side of it."""
    if value is None or before is None or after is None:
        return None
    return value / ((before + after) / 2)


def compare(results: list[dict], variants: list[str]) -> dict:
    """Per Ray variant, each run against its neighbouring local runs; medians over repeats."""
    ratios: dict[str, dict[str, list[float]]] = {}
    locals_ = [i for i, r in enumerate(results) if r["run"].startswith("local")]
    for before, after in zip(locals_, locals_[1:], strict=False):
        lb, la = results[before], results[after]
        for r in results[before + 1 : after]:
            out = ratios.setdefault(r["variant"], {})
            pairs = {
                "wall": (r["wall_s"], lb["wall_s"], la["wall_s"]),
                "steady_time": tuple(
                    1 / x if x else None
                    for x in (r["steady_audio_min_per_min"], lb["steady_audio_min_per_min"],
                              la["steady_audio_min_per_min"])
                ),
                "cpu_per_audio_min": (r["cpu_s_per_audio_min"], lb["cpu_s_per_audio_min"],
                                      la["cpu_s_per_audio_min"]),
                "steady_cpu_per_audio_min": (r["steady_cpu_s_per_audio_min"],
                                             lb["steady_cpu_s_per_audio_min"],
                                             la["steady_cpu_s_per_audio_min"]),
            }  # fmt: skip
            for name, (value, b, a) in pairs.items():
                ratio = _ratio(value, b, a)
                if ratio is not None:
                    out.setdefault(name, []).append(ratio)
    return {
        n: {name: {"median": statistics.median(v), "each": [round(x, 3) for x in v]}
            for name, v in ratios.get(n, {}).items()}
        for n in variants
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path, help="a folder of audio (bench/corpus.py makes one)")
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--settings", nargs="+", choices=("lean", "default"), default=["lean"],
        help="how the cluster is started: lean (docs/scaling.md) and/or Ray's defaults",
    )  # fmt: skip
    parser.add_argument(
        "--actor-shape", nargs="+", choices=("node", "cpu"), default=["node"],
        help="node: one actor per node holding its CPUs (the default); cpu: one per CPU",
    )  # fmt: skip
    parser.add_argument(
        "--cli", action="store_true",
        help="run each ingest as the `sonic ingest` command in a child process (whole call)",
    )  # fmt: skip
    parser.add_argument(
        "--files-per-batch", type=int, nargs="+", default=[None], metavar="N",
        help="files per actor call per CPU, one Ray run per value (default: RayOptions')",
    )  # fmt: skip
    parser.add_argument(
        "--fresh-catalog", action="store_true",
        help="--cli: each command makes its catalog, so it loads the model up front (a "
        "catalog's first ingest); default: the catalog remembers the checkpoint (later ones)",
    )  # fmt: skip
    parser.add_argument(
        "--warm-cluster", nargs="+", choices=("cold", "warm"), default=["cold"],
        help="cold: each Ray run is a fresh cluster's first ingest; warm: an unmeasured "
        "two-file ingest runs first (Ray Data's helper actors are up, as for every later one)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument(
        "--no-catalog", action="store_true", help="do not run bench/scale_catalog.py after"
    )
    args = parser.parse_args()
    if args.cli and ("cpu" in args.actor_shape or args.files_per_batch != [None]):
        parser.error("--cli runs what `sonic ingest --ray` does: one actor per node, "
                     "the default batches")  # fmt: skip
    cores = os.cpu_count() or 1
    # every Ray shape, in this order within each round
    shapes = [
        (n, st, a, f, w) for n in args.nodes for st in args.settings for a in args.actor_shape
        for f in args.files_per_batch for w in args.warm_cluster
    ]  # fmt: skip
    variants = [_variant(n, st, a, f, w == "warm") for n, st, a, f, w in shapes]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        model = load_model()
    work = Path(tempfile.mkdtemp(prefix="sonic-scale-"))
    results: list[dict] = []
    try:

        def local(label: str) -> dict:
            if args.cli:
                remembered = None if args.fresh_catalog else model
                return _measure_cli(label, args.corpus, work, [], remembered)
            return _measure(
                label, args.corpus, work, model,
                lambda catalog, clock: ingest([args.corpus], catalog, model, IngestOptions(),
                                              clock),
            )  # fmt: skip

        # local, then each Ray shape, repeated; a last local run closes the sequence so
        # that every Ray run has a local run on either side (the load of the machine drifts)
        for repeat in range(args.repeats):
            results.append({**local(f"local {repeat + 1}"), "nodes": 0})
            for nodes, settings, shape, per_batch, warm in shapes:
                actors = nodes * (cores if nodes == 1 else 1) if shape == "cpu" else None
                run = _ray_run(args.corpus, work, model, nodes, cores, settings, actors,
                               args.cli, per_batch, not args.fresh_catalog,
                               warm == "warm")  # fmt: skip
                variant = _variant(nodes, settings, shape, per_batch, warm == "warm")
                results.append({**run, "nodes": nodes, "variant": variant})
        results.append({**local(f"local {args.repeats + 1}"), "nodes": 0})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = compare(results, variants)
    how = "sonic ingest commands" if args.cli else "ingest calls in this process"
    if args.cli:
        how += ", each on a new catalog" if args.fresh_catalog else ", catalogs that know the model"
    print(f"\n{cores} cores ({_cpu_flags()}); corpus {args.corpus}; {args.repeats} repeats; "
          f"{how}")  # fmt: skip
    print(f"{'run':<34} {'wall s':>7} {'amin/min':>9} {'steady':>8} {'CPU s':>7} "
          f"{'CPU s/amin':>10} {'steady':>7} {'procs':>6} {'load':>5}")  # fmt: skip
    for r in results:
        steady = r["steady_audio_min_per_min"]
        steady_cpu = r["steady_cpu_s_per_audio_min"]
        print(
            f"{r['run']:<34} {r['wall_s']:>7.1f} {r['audio_min_per_min']:>9.1f} "
            f"{'-' if steady is None else f'{steady:.1f}':>8} {r['cpu_s']:>7.1f} "
            f"{r['cpu_s_per_audio_min']:>10.2f} "
            f"{'-' if steady_cpu is None else f'{steady_cpu:.2f}':>7} "
            f"{r['processes']:>6} {r['load_average']:>5.1f}"
        )
    print("\nmedian ratios, Ray / neighbouring local runs (>1: Ray costs more, or is slower)")
    print(f"{'variant':<22} {'wall':>7} {'steady time':>12} {'CPU/amin':>9} "
          f"{'steady CPU/amin':>16}")  # fmt: skip
    for n, row in summary.items():
        cells = [
            row.get(k, {}).get("median")
            for k in ("wall", "steady_time", "cpu_per_audio_min", "steady_cpu_per_audio_min")
        ]
        widths = (7, 12, 9, 16)
        pairs = zip(cells, widths, strict=True)
        text = [f"{'-' if c is None else f'{c:.3f}':>{w}}" for c, w in pairs]
        print(f"{n:<22} " + " ".join(text))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"cores": cores, "cpu": _cpu_flags(), "cli": args.cli,
                 "fresh_catalog": args.fresh_catalog, "results": results,
                 "ratios": summary},  # fmt: skip
                indent=2,
            )  # fmt: skip
        )
    companion = Path(__file__).with_name("scale_catalog.py")
    if not args.no_catalog and companion.exists():
        subprocess.run([sys.executable, str(companion)], check=True)


def _variant(
    nodes: int, settings: str, shape: str, files_per_batch: int | None = None, warm: bool = False
) -> str:  # fmt: skip
    """How the summary names one Ray shape: nodes, settings, actor shape, batches, warm."""
    return f"{nodes}n {settings} {shape}-actors" + _batches(files_per_batch) + (
        " warm" if warm else ""
    )


def _batches(files_per_batch: int | None) -> str:
    """The suffix that names a run's files per actor call (none for the default)."""
    return "" if files_per_batch is None else f" {files_per_batch}fpb"


def _cpu_flags() -> str:
    """The CPU's model and the vector extensions that set the network's speed."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
    return f"{model}; " + " ".join(f for f in wanted if f in flags)


if __name__ == "__main__":
    main()
