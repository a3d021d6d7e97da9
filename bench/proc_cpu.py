"""CPU-seconds used by a process tree, from ``/proc``: this process and all it started.

Wall time on a machine other sessions share measures the machine's load as much as
the code; CPU time does not (a process waiting for a core uses none). A Ray
cluster started by ``ray.cluster_utils.Cluster`` is a tree of processes under the
driver (GCS, raylets, workers, actors and their decode processes), and a local
ingest is this process and its decode workers, so summing user + system time over
the tree compares the two by the CPU each needs.

A process is followed from the first sample that finds it below this process,
even after it is re-parented (Ray's workers may outlive their raylet's view); it
is keyed by pid and start time, so a reused pid is a new process. What a process
uses between its last sample and its exit is missed: at 0.2 s between samples
that is well under a CPU-second per process, which is why each run reports its
process count beside the CPU-seconds.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, int, float] | None:
    """(parent pid, start time in ticks, user + system CPU-seconds) of one process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()  # after "(comm)", which may hold spaces
    ppid, utime, stime, start = int(fields[1]), int(fields[11]), int(fields[12]), int(fields[19])
    return ppid, start, (utime + stime) / TICK


class TreeCpu:
    """Samples the CPU-seconds of this process's tree in a thread; ``total()`` since start."""

    def __init__(self, interval: float = 0.2) -> None:
        self.root = os.getpid()
        self.interval = interval
        self._base: dict[tuple[int, int], float] = {}
        self._last: dict[tuple[int, int], float] = {}
        self._tracked: set[tuple[int, int]] = set()
        self.samples: list[tuple[float, float]] = []  # (monotonic time, CPU-seconds so far)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _sample(self, first: bool = False) -> None:
        stats = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                stat = _stat(int(entry.name))
                if stat is not None:
                    stats[int(entry.name)] = stat
        below = {self.root}
        grew = True
        while grew:  # the tree below the root, by parent links
            grew = False
            for pid, (ppid, _, _) in stats.items():
                if ppid in below and pid not in below:
                    below.add(pid)
                    grew = True
        with self._lock:
            for pid, (_, start, cpu) in stats.items():
                key = (pid, start)
                if pid in below:
                    self._tracked.add(key)
                if key in self._tracked:
                    if first:
                        self._base[key] = cpu
                    self._last[key] = cpu
            self.samples.append((time.monotonic(), self._total()))

    def _total(self) -> float:
        return sum(cpu - self._base.get(key, 0.0) for key, cpu in self._last.items())

    def total(self) -> float:
        with self._lock:
            return self._total()

    def processes(self) -> int:
        return len(self._tracked)

    def at(self, when: float) -> float:
        """CPU-seconds used by ``when`` (the last sample at or before it)."""
        with self._lock:
            before = [cpu for t, cpu in self.samples if t <= when]
        return before[-1] if before else 0.0

    def __enter__(self) -> TreeCpu:
        self._sample(first=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
