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
the last committed track, in audio-minutes per minute, and the overhead of each
Ray run against the mean of two local runs, one before and one after them (the
load of a shared machine drifts).

    python bench/corpus.py /tmp/scale-corpus --tracks 48 --seconds 120 --format mp3
    python bench/scale.py /tmp/scale-corpus --nodes 1 2 3 --json /tmp/scale.json

If ``bench/scale_catalog.py`` (PostgreSQL against SQLite writes and ``similar`` at
100k tracks) is present it is run afterwards, unless ``--no-catalog``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

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
    with Catalog(data_dir) as catalog:
        started = time.monotonic()
        summary = run(catalog, clock)
        wall = time.monotonic() - started
    shutil.rmtree(data_dir, ignore_errors=True)
    assert not summary.failed, summary.failed
    result = {
        "run": label,
        "tracks": summary.analysed,
        "audio_minutes": summary.audio_seconds / 60,
        "wall_s": wall,
        "audio_min_per_min": summary.audio_seconds / wall,
        "steady_audio_min_per_min": clock.steady_rate(),
        "nodes_used": len(summary.nodes) or None,
    }
    print(json.dumps(result), flush=True)
    return result


def _ray_run(corpus: Path, work: Path, model, nodes: int, cores: int) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from ingest.distributed import RayOptions, ingest_on_ray

    per_node = cores if nodes == 1 else 1
    node = {"num_cpus": per_node, "object_store_memory": 200 * 2**20}
    os.environ["PYTHONPATH"] = str(REPO)  # the cluster's workers import this tree
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    for _ in range(nodes - 1):
        cluster.add_node(**node)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        return _measure(
            f"ray {nodes} node{'s' if nodes > 1 else ''} x {per_node} cpu",
            corpus, work, model,
            lambda catalog, clock: ingest_on_ray(
                [corpus], catalog, model, IngestOptions(), clock, None,
                RayOptions(address=cluster.address),
            ),
        )  # fmt: skip
    finally:
        ray.shutdown()
        cluster.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path, help="a folder of audio (bench/corpus.py makes one)")
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument(
        "--no-catalog", action="store_true", help="do not run bench/scale_catalog.py after"
    )
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        model = load_model()
    work = Path(tempfile.mkdtemp(prefix="sonic-scale-"))
    try:

        def local(label: str) -> dict:
            return _measure(
                label, args.corpus, work, model,
                lambda catalog, clock: ingest([args.corpus], catalog, model, IngestOptions(),
                                              clock),
            )  # fmt: skip

        # local before and after the Ray runs: on a shared machine the load drifts,
        # and the Ray runs are compared with the mean of the two
        results = [local("local")]
        for nodes in args.nodes:
            results.append(_ray_run(args.corpus, work, model, nodes, cores))
        results.append(local("local again"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    locals_ = [r for r in results if r["run"].startswith("local")]
    base_wall = sum(r["audio_min_per_min"] for r in locals_) / len(locals_)
    steadies = [r["steady_audio_min_per_min"] for r in locals_]
    base_steady = sum(steadies) / len(steadies) if all(steadies) else None
    for r in results:
        if r in locals_:
            continue
        r["overhead_wall"] = 1 - r["audio_min_per_min"] / base_wall
        if r["steady_audio_min_per_min"] and base_steady:
            r["overhead_steady"] = 1 - r["steady_audio_min_per_min"] / base_steady
    print(f"\n{cores} cores; corpus {args.corpus}")
    print(f"{'run':<22} {'wall s':>7} {'audio-min/min':>14} {'overhead':>9} "
          f"{'steady':>8} {'overhead':>9}")  # fmt: skip
    for r in results:
        steady = r["steady_audio_min_per_min"]
        wall_o, steady_o = r.get("overhead_wall"), r.get("overhead_steady")
        print(
            f"{r['run']:<22} {r['wall_s']:>7.1f} {r['audio_min_per_min']:>14.1f} "
            f"{'' if wall_o is None else f'{wall_o:+.1%}':>9} "
            f"{'-' if steady is None else f'{steady:.1f}':>8} "
            f"{'' if steady_o is None else f'{steady_o:+.1%}':>9}"
        )
    if args.json:
        args.json.write_text(json.dumps({"cores": cores, "results": results}, indent=2))
    companion = Path(__file__).with_name("scale_catalog.py")
    if not args.no_catalog and companion.exists():
        subprocess.run([sys.executable, str(companion)], check=True)


if __name__ == "__main__":
    main()
