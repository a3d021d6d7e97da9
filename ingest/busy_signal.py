"""A shared "the service is answering requests" signal, and how an ingest yields to it.

Why a signal and not only a CPU priority: ``sonic ingest --nice 10`` orders the
ingest below the service only when the kernel compares the two processes. With
autogroup scheduling (the default on desktop Linux) a service started in one
terminal and an ingest started in another are in different groups, and the groups
share the CPU equally whatever their nice values. Even within one group, each
ingest thread at nice 10 keeps about a tenth of a core's weight, and on a 2-core
machine a service and its clients use both cores in bursts. So the ingest looks
at what the service is doing and steps aside itself.

The signal: ``service-busy`` in the data directory, 8 bytes memory-mapped by both
sides, holding the ``CLOCK_MONOTONIC`` time (ns) of the last request that started
or ended. The service writes it twice per request (a store into shared memory,
well under a microsecond, no system call); an ingest reads it before each network
call. No lock: the value is one aligned 8-byte word, and a stale read costs at
most one batch's worth of the wrong decision. Several services on one data
directory all write the same word, which is what the ingest needs to know.

The yield (:class:`Yielder`): while the service was active in the last
``HOLD_S``, the ingest runs one network call at a time (instead of one per core)
and rests between calls so that it uses about ``duty`` of one core; its decode
workers then block on their full queue and sleep too. It never stops entirely,
so an ingest under permanent load still finishes, more slowly.

What sets a reader's latency is less the CPU the ingest takes than how long it holds
a core in one go: 50 closed-loop clients keep the service's one event-loop thread
runnable all the time, and while an ingest thread shares its core (nice does not act
across autogroups or cgroups) the service runs at half speed for as long as that
burst lasts. So while the service is busy every part of the ingest works in short
bursts: network calls take at most ``BUSY_BATCH`` segments (a few milliseconds each
instead of one long call), and the decode workers, which the network's rests do not
reach while they hash, decode and compute features ahead of a full queue, pace
themselves with a :class:`Pacer` (``QUANTUM_S`` of CPU, then a rest).
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from pathlib import Path

FILE_NAME = "service-busy"
LAYOUT = struct.Struct("<q")  # last activity, time.monotonic_ns()
HOLD_S = 0.5  # the service counts as busy for this long after its last request
DUTY = 0.25  # share of one core the ingest's network calls keep while yielding
MAX_REST_S = 2.0  # longest rest between two calls, however slow a call was
REOPEN_S = 2.0  # how often an ingest looks for the file when no service has made it
BUSY_BATCH = 4  # segments per network call while the service is busy (short bursts)
QUANTUM_S = 0.01  # CPU a decode worker may use in one go while the service is busy
WORKER_DUTY = 0.2  # share of one core each decode worker keeps while the service is busy


def _open_map(path: Path, create: bool) -> mmap.mmap | None:
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_size < LAYOUT.size:
            if not create:
                return None
            os.ftruncate(fd, LAYOUT.size)
        return mmap.mmap(fd, LAYOUT.size)
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)  # the map keeps its own reference


class BusyBeacon:
    """The service's side: :meth:`touch` at the start and the end of every request.

    A data directory the service cannot write (read-only media) just means no
    signal: the service answers as before and an ingest does not yield.
    """

    def __init__(self, data_dir: Path) -> None:
        self._map = _open_map(Path(data_dir) / FILE_NAME, create=True)

    def touch(self) -> None:
        if self._map is not None:
            LAYOUT.pack_into(self._map, 0, time.monotonic_ns())

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


class BusyWatch:
    """The ingest's side: whether a service on this data directory is answering now."""

    def __init__(self, data_dir: Path, hold_s: float = HOLD_S) -> None:
        self.path = Path(data_dir) / FILE_NAME
        self.hold_ns = int(hold_s * 1e9)
        self._map: mmap.mmap | None = None
        self._looked = float("-inf")

    def last_activity_ns(self) -> int | None:
        """The monotonic time of the service's last request, or None if none is known."""
        if self._map is None:
            now = time.monotonic()
            if now - self._looked < REOPEN_S:
                return None
            self._looked = now
            self._map = _open_map(self.path, create=False)
            if self._map is None:
                return None
        (stamp,) = LAYOUT.unpack_from(self._map, 0)
        return stamp or None

    def busy(self) -> bool:
        stamp = self.last_activity_ns()
        return stamp is not None and time.monotonic_ns() - stamp < self.hold_ns

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


class Yielder:
    """How many network calls an ingest may run now, and when the next may start.

    ``watch`` None: never yields (``sonic ingest --no-yield-to-service``).
    """

    def __init__(self, watch: BusyWatch | None, threads: int, duty: float = DUTY) -> None:
        self.watch = watch
        self.threads = max(1, threads)
        self.duty = min(1.0, max(0.01, duty))
        self.next_call_at = 0.0
        self.yielded_calls = 0  # calls made while the service was busy
        self.rested_s = 0.0  # time the ingest held back for the service

    def busy(self) -> bool:
        return self.watch is not None and self.watch.busy()

    def slots(self) -> int:
        """Network calls that may be under way at once: one while the service is busy.

        Otherwise one more than there are threads: a call queued behind the running
        ones keeps each thread fed while the main loop is busy elsewhere.
        """
        return 1 if self.busy() else self.threads + 1

    def batch_limit(self, batch_size: int) -> int:
        """Segments the next network call may take: few while the service is busy.

        A call is one uninterrupted burst on one core; short calls with rests in
        between cost the service's event loop a few milliseconds at a time.
        """
        return min(batch_size, BUSY_BATCH) if self.busy() else batch_size

    def may_start(self, running: int) -> bool:
        """Whether a new call may start with ``running`` calls under way."""
        if running >= self.slots():
            return False
        return self.watch is None or time.monotonic() >= self.next_call_at or not self.busy()

    def finished(self, call_seconds: float) -> None:
        """A call took ``call_seconds``: while the service is busy, rest before the next."""
        if not self.busy():
            self.next_call_at = 0.0
            return
        self.yielded_calls += 1
        rest = min(MAX_REST_S, call_seconds * (1 - self.duty) / self.duty)
        self.next_call_at = time.monotonic() + rest

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()


class Pacer:
    """A loop's yield to the service, for ingest work that is not a network call.

    Call it often (a decode worker calls it after each decoded block, hashed
    megabyte and feature chunk). While the service is busy, after each
    ``quantum_s`` of this process's CPU it rests long enough to keep about ``duty``
    of one core, at most ``MAX_REST_S`` at a time, so it never stops: an ingest
    under permanent load still finishes. CPU time rather than wall time, because on
    a loaded machine wall time counts the waits for a core too. While the service
    is quiet the cost is one ``process_time()`` call.
    """

    def __init__(
        self, watch: BusyWatch | None, duty: float = WORKER_DUTY, quantum_s: float = QUANTUM_S
    ) -> None:
        self.watch = watch
        self.duty = min(1.0, max(0.01, duty))
        self.quantum_s = quantum_s
        self._cpu = time.process_time()
        self.rested_s = 0.0  # time this loop held back for the service
        self.rests = 0

    @classmethod
    def for_data_dir(cls, data_dir: Path | str | None) -> Pacer:
        """The pacer of a decode worker of an ingest into ``data_dir`` (None: never yields)."""
        return cls(BusyWatch(Path(data_dir)) if data_dir is not None else None)

    def __call__(self) -> None:
        if self.watch is None:
            return
        cpu = time.process_time()
        used = cpu - self._cpu
        if used < self.quantum_s:
            return
        if self.watch.busy():
            rest = min(MAX_REST_S, used * (1 - self.duty) / self.duty)
            time.sleep(rest)
            self.rested_s += rest
            self.rests += 1
        self._cpu = time.process_time()

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
