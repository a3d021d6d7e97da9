"""Watching benchmark subprocesses: their process tree, its memory, its leftovers."""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass, field


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(c) for c in fh.read().split()]
    except OSError:
        return []


def tree_rss_bytes(root_pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc.

    Walks only the tree (``/proc/PID/task/PID/children``), so sampling it costs
    little CPU beside the ingest being measured.
    """
    total, stack = 0, [root_pid]
    page = os.sysconf("SC_PAGE_SIZE")
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
        stack.extend(children(pid))
    return total


def environment_of(pid: int, keys: tuple[str, ...]) -> dict[str, str | None] | None:
    """The values of ``keys`` in process ``pid``'s environment (None: it is gone)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            pairs = [item.split(b"=", 1) for item in fh.read().split(b"\0") if b"=" in item]
    except OSError:
        return None
    env = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}
    return {key: env.get(key) for key in keys}


class PeakRss(threading.Thread):
    """Samples a process tree's RSS; with ``env_keys``, also each process's values of them.

    The environment check is how ``bench/ingest.py --avx2`` shows that its caps
    reached every process of the tree (decode workers included), not just the first.
    """

    def __init__(self, pid: int, interval: float = 0.25, env_keys: tuple[str, ...] = ()) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0
        self.env_keys = env_keys
        self.environments: dict[int, dict[str, str | None]] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            if self.env_keys:
                for pid in [self.pid, *descendants(self.pid)]:
                    if pid not in self.environments:
                        env = environment_of(pid, self.env_keys)
                        if env is not None:
                            self.environments[pid] = env
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` in the tree, now."""
    found, stack = [], children(pid)
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(children(child))
    return found


@dataclass
class Measured:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float  # user + system of the process and every descendant it waited for
    peak_rss_bytes: int  # of the whole process tree, sampled every 0.25 s
    # pid -> the values of the asked-for environment variables, for every process seen
    environments: dict[int, dict[str, str | None]] = field(default_factory=dict)


def run_measured(
    cmd: list[str], cwd=None, env: dict | None = None, env_keys: tuple[str, ...] = ()
) -> Measured:
    """Run ``cmd`` to its end: wall time, CPU seconds of its tree, peak RSS of its tree.

    CPU is the growth of this process's RUSAGE_CHILDREN, so only one measured
    command may run at a time (the benchmarks run them one after another).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    monitor = PeakRss(proc.pid, env_keys=env_keys)
    monitor.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    peak = monitor.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measured(proc.returncode, out, err, wall, cpu, peak, monitor.environments)
