"""Where an idle Ray cluster's CPU goes: per-process CPU-seconds, default against lean.

``bench/scale.py`` found Ray's overhead in CPU to be a fixed cost: the cluster's
own processes (GCS, raylets, dashboard agents, log monitor, prestarted idle
workers) burn CPU for as long as the cluster runs, whether it analyses or not.
This starts a ``ray.cluster_utils.Cluster`` the way the bench does (N nodes on
this machine), connects a driver, lets it sit for ``--seconds`` and sums the CPU
each of the cluster's processes used in that window, grouped by role. The
``lean`` variant starts the nodes with :func:`ingest.ray_settings.lean_node_args`
(what docs/scaling.md recommends for ``ray start``), ``default`` with Ray's own
defaults (dashboard off in both, as the bench always had it). The variants
alternate, so the machine's drifting load hits both.

    python bench/ray_idle.py --nodes 1 2 --seconds 30 --repeats 2

With ``--corpus`` it then ingests that folder twice on the same cluster and
attributes each ingest's CPU to the processes that spent it (the actors, Ray
Data's helper actors, the daemons, the driver). It also reports the CPU the
cluster's start-up cost (from ``Cluster()`` to the
driver connected), which every run pays once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.proc_cpu import TICK  # noqa: E402
from ingest.ray_settings import lean_env, lean_node_args  # noqa: E402


def role(pid: int) -> str:
    """A short name for what a process of the cluster is, from its command line."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "gone"
    for needle, name in (
        ("gcs_server", "gcs_server"),
        ("raylet/raylet", "raylet"),
        ("dashboard/agent.py", "dashboard agent"),
        ("runtime_env/agent", "runtime_env agent"),
        ("dashboard/dashboard.py", "dashboard"),
        ("log_monitor.py", "log monitor"),
        ("autoscaler/_private/monitor.py", "autoscaler monitor"),
        ("ray::IDLE", "idle worker"),
        ("default_worker.py", "idle worker"),
    ):
        if needle in cmd:
            return name
    if cmd.startswith("ray::"):
        return cmd.split()[0]
    return "other: " + cmd[:60]


def tree_cpu(root: int) -> dict[int, tuple[str, float]]:
    """Role and user+system CPU-seconds of every process below ``root`` (not root)."""
    stats = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_bytes()
        except OSError:
            continue
        fields = raw[raw.rindex(b")") + 2 :].split()
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK)
    below, grew = {root}, True
    while grew:
        grew = False
        for pid, (ppid, _) in stats.items():
            if ppid in below and pid not in below:
                below.add(pid)
                grew = True
    below.discard(root)
    return {pid: (role(pid), stats[pid][1]) for pid in below}


class RoleSampler:
    """Samples every process below this one until stopped: CPU-seconds per role.

    A process is kept from the first sample that sees it (even one that exits before
    the end: its last sample counts), so the actors' workers, Ray Data's helper
    actors and the decode processes are all attributed.
    """

    def __init__(self, root: int, interval: float = 0.25) -> None:
        import threading

        self.root, self.interval = root, interval
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self.baseline = tree_cpu(root)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for pid, (name, cpu) in tree_cpu(self.root).items():
                old = self.last.get(pid)
                if old is None or not old[0].startswith("ray::") or name.startswith("ray::"):
                    self.last[pid] = (name, cpu)  # keep the actor's name once it has one
                else:
                    self.last[pid] = (old[0], cpu)

    def __enter__(self) -> RoleSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def by_role(self) -> dict[str, list]:
        roles: dict[str, list] = {}
        for pid, (name, cpu) in self.last.items():
            spent = cpu - self.baseline.get(pid, (name, 0.0))[1]
            entry = roles.setdefault(name, [0, 0.0])
            entry[0] += 1
            entry[1] = round(entry[1] + spent, 2)
        return dict(sorted(roles.items(), key=lambda kv: -kv[1][1]))


def ingest_once(corpus: Path, address: str) -> dict:
    """One ``ingest_on_ray`` of ``corpus`` into a fresh data directory, attributed."""
    import shutil
    import tempfile
    import warnings

    from catalog.store import Catalog
    from embeddings.checkpoint import UntrainedModelWarning, load_model
    from ingest.distributed import RayOptions, ingest_on_ray
    from ingest.pipeline import IngestOptions

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        model = load_model()
    data = Path(tempfile.mkdtemp(prefix="sonic-ray-idle-"))
    try:
        with Catalog(data) as catalog, RoleSampler(os.getpid()) as sampler:
            c0, t0 = self_cpu(), time.monotonic()
            summary = ingest_on_ray(
                [corpus], catalog, model, IngestOptions(), None, None, RayOptions(address)
            )
            driver, wall = self_cpu() - c0, time.monotonic() - t0
    finally:
        shutil.rmtree(data, ignore_errors=True)
    roles = sampler.by_role()
    roles["driver (this process)"] = [1, round(driver, 2)]
    return {
        "tracks": summary.analysed,
        "audio_minutes": round(summary.audio_seconds / 60, 2),
        "wall_s": round(wall, 2),
        "cpu_s": round(sum(v for _, v in roles.values()), 2),
        "by_role": roles,
    }


def self_cpu() -> float:
    times = os.times()
    return times.user + times.system


def one(variant: str, nodes: int, seconds: float, corpus: Path | None = None) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    cores = os.cpu_count() or 1
    per_node = cores if nodes == 1 else 1
    node = {"num_cpus": per_node, "object_store_memory": 200 * 2**20}
    saved = dict(os.environ)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["PYTHONPATH"] = str(REPO)  # the cluster's workers import this tree
    if variant == "lean":
        os.environ.update(lean_env())
        head, worker = lean_node_args(node), lean_node_args(node, head=False)
    else:
        head, worker = {**node, "include_dashboard": False}, node
    me = os.getpid()
    t0, c0 = time.monotonic(), self_cpu()
    cluster = Cluster(initialize_head=True, head_node_args=head)
    for _ in range(nodes - 1):
        cluster.add_node(**worker)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    start_wall = time.monotonic() - t0
    start_cpu = sum(c for _, c in tree_cpu(me).values()) + self_cpu() - c0
    try:
        before = tree_cpu(me)
        d0 = self_cpu()
        time.sleep(seconds)
        after = tree_cpu(me)
        driver = self_cpu() - d0
        # twice: Ray Data's helper actors are detached, so only a fresh cluster's first
        # ingest starts them
        run = [ingest_once(corpus, cluster.address) for _ in range(2)] if corpus else None
    finally:
        ray.shutdown()
        cluster.shutdown()
        os.environ.clear()
        os.environ.update(saved)
    by_role: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for pid, (name, cpu) in after.items():
        by_role[name] += cpu - before.get(pid, (name, 0.0))[1]
        count[name] += 1
    by_role["driver (this process)"] = driver
    count["driver (this process)"] = 1
    total = sum(by_role.values())
    return {
        "variant": variant,
        "nodes": nodes,
        "seconds": seconds,
        "processes": len(after),
        "startup_wall_s": round(start_wall, 2),
        "startup_cpu_s": round(start_cpu, 2),
        "idle_cpu_s": round(total, 2),
        "idle_cpu_per_s": round(total / seconds, 4),
        "by_role": {k: [count[k], round(v, 2)] for k, v in sorted(by_role.items())},
        "run": run,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=["default", "lean"])
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--corpus", type=Path, help="after the idle window, ingest this folder, attributed"
    )
    args = parser.parse_args()
    results = []
    for _ in range(args.repeats):
        for nodes in args.nodes:
            for variant in args.variants:
                result = one(variant, nodes, args.seconds, args.corpus)
                print(json.dumps(result), flush=True)
                results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
