"""The decode worker processes of one ingest: start, watch for crashes and hangs, replace.

The workers themselves (hashing, tags, decoding, features) are :mod:`ingest.worker`;
this is the main process's side of them: the task and result queues, which worker
holds which file, and the no-progress deadline that tells a hung decoder from a
long track.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

from ingest.worker import Task, single_thread_env, worker_main


class WorkerPool:
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
