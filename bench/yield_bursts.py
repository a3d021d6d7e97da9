"""How long an ingest holds the CPU in one go while `sonic serve` is busy (issue 28).

A reader's latency during an ingest is set less by the CPU the ingest takes in all
than by how much it takes in a short window: 50 closed-loop clients keep the
service's event loop runnable all the time, and each 100 ms in which an ingest
thread shares its core (nice does not act across autogroups or cgroups) is 100 ms
at half speed for every request in flight. This measures exactly that, without a
service or clients, so that a loaded machine skews it less than latencies:

  * a thread in this process touches the data directory's busy signal every 20 ms
    (what a service under steady load does), for the whole ingest;
  * ``sonic ingest --nice 0 --yield-to-service`` runs from each checkout in turn
    (``--code LABEL=CHECKOUT``), the rounds alternating;
  * every 10 ms the CPU time of every thread of the ingest's process tree is read
    from ``/proc/PID/task/TID/schedstat`` (nanoseconds); from the start of the
    analysis (the decode workers are up) to the end: CPU per 100 ms window (p50,
    p99, max, in ms of CPU per 100 ms, 200 = both cores), the CPU in all, and the
    wall time to finish.

    python bench/yield_bursts.py --code this=.,base=/tmp/base --tracks 4 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "bench"))

from corpus import generate  # noqa: E402
from procs import descendants  # noqa: E402
from torture import cpu_description  # noqa: E402

from ingest.busy_signal import BusyBeacon  # noqa: E402

SAMPLE_S = 0.01
WINDOW_S = 0.1


def tree_cpu_ns(root: int, seen: dict[tuple[int, int], int]) -> int:
    """Update ``seen`` (pid, tid) -> run ns for every thread of the tree; the sum so far."""
    for pid in (root, *descendants(root)):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                    seen[(pid, int(tid))] = int(fh.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # the thread ended: its last reading stays counted
    return sum(seen.values())


def one_ingest(music: Path, work: Path, repo: Path, label: str) -> dict:
    data_dir = work / f"data-{label}"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    beacon, stop = BusyBeacon(data_dir), threading.Event()

    def busy_service() -> None:
        while not stop.is_set():
            beacon.touch()
            time.sleep(0.02)

    toucher = threading.Thread(target=busy_service, daemon=True)
    toucher.start()
    env = {**os.environ, "SONIC_DATA_DIR": str(data_dir)}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(repo)]
        + [
            p
            for p in env.get("PYTHONPATH", "").split(os.pathsep)
            if p and Path(p).resolve() != REPO
        ]  # fmt: skip
    )
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.cli", "ingest", str(music), "--no-progress", "--json",
         "--nice", "0", "--yield-to-service"],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    seen: dict[tuple[int, int], int] = {}
    samples: list[tuple[float, int]] = []
    analysing_at = None
    while proc.poll() is None:
        now = time.monotonic()
        total = tree_cpu_ns(proc.pid, seen)
        if analysing_at is None and len(descendants(proc.pid)) >= 3:
            analysing_at = now
        if analysing_at is not None:
            samples.append((now, total))
        time.sleep(SAMPLE_S)
    out = proc.stdout.read()
    wall = time.monotonic() - started
    stop.set()
    toucher.join()
    beacon.close()
    summary = json.loads(out) if out.strip().startswith(b"{") else {}
    windows = _windows(samples)
    return {
        "label": label,
        "exit_code": proc.returncode,
        "analysed": summary.get("analysed"),
        "wall_s": round(wall, 1),
        "analysis_wall_s": round(samples[-1][0] - samples[0][0], 1) if samples else None,
        "analysis_cpu_s": round((samples[-1][1] - samples[0][1]) / 1e9, 2) if samples else None,
        "cpu_ms_per_100ms_p50": round(float(np.percentile(windows, 50)), 1),
        "cpu_ms_per_100ms_p99": round(float(np.percentile(windows, 99)), 1),
        "cpu_ms_per_100ms_max": round(float(windows.max()), 1),
        "load_average_1min": os.getloadavg()[0],
    }


def _windows(samples: list[tuple[float, int]]) -> np.ndarray:
    """CPU (ms) the tree used in each WINDOW_S window, windows starting at every sample."""
    if len(samples) < 2:
        return np.zeros(1)
    t = np.array([s[0] for s in samples])
    cpu = np.array([s[1] for s in samples], dtype=np.float64)
    ends = np.searchsorted(t, t + WINDOW_S)
    valid = ends < len(t)
    used = (cpu[ends[valid]] - cpu[valid]) / 1e6  # ms of CPU
    span = (t[ends[valid]] - t[valid]) / WINDOW_S  # windows a little over 100 ms: scale
    return used / span if valid.any() else np.zeros(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", default=f"this={REPO}", help="LABEL=CHECKOUT,...")
    parser.add_argument("--tracks", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=120.0, help="length of each track")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "yield_bursts.json")
    args = parser.parse_args()
    codes = [(label, Path(path).resolve()) for label, _, path in
             (c.partition("=") for c in args.code.split(","))]  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="sonic-bursts-"))
    results: dict = {"cpu": cpu_description(), "command": " ".join(sys.argv), "runs": []}
    print(f"CPU: {results['cpu']}", flush=True)
    try:
        generate(work / "music", args.tracks, args.seconds, "mp3", jobs=os.cpu_count() or 1)
        for round_ in range(args.rounds):
            for label, repo in codes:
                run = {"round": round_ + 1, **one_ingest(work / "music", work, repo, label)}
                results["runs"].append(run)
                print(f"  {run}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    keys = ("wall_s", "analysis_cpu_s", "cpu_ms_per_100ms_p50", "cpu_ms_per_100ms_p99",
            "cpu_ms_per_100ms_max")  # fmt: skip
    print("| ingest | rounds | " + " | ".join(keys) + " |")
    print("|---|---:|" + "---:|" * len(keys))
    for label, _ in codes:
        runs = [r for r in results["runs"] if r["label"] == label]
        medians = {k: float(np.median([r[k] for r in runs])) for k in keys}
        results[f"median_{label}"] = medians
        print(f"| {label} | {len(runs)} | " + " | ".join(f"{medians[k]:g}" for k in keys) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
