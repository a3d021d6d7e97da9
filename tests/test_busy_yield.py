"""An ingest stands aside while `sonic serve` answers requests (issue 28, defect 8).

The service touches a shared 8-byte map in the data directory at each request's
start and end (``ingest.busy_signal``); an ingest that sees a recent touch runs
one network call at a time and rests between calls. Checked for real: the map
written by another process, the touch made by requests to a running uvicorn
server, and an ingest that rests while a beacon keeps touching and still stores
exactly what an ingest without it stores.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from service_fixtures import running_server

from audio_fixtures import chord, write
from catalog.store import Catalog
from helpers import run_ingest, tracks_by_path
from ingest import busy_signal
from ingest.busy_signal import BusyBeacon, BusyWatch, Yielder
from ui.service import create_app
from ui.state import ServiceState, Settings

REPO = Path(__file__).resolve().parents[1]
SR = 22050


def test_a_touch_in_another_process_is_seen_and_then_expires(tmp_path, monkeypatch):
    monkeypatch.setattr(busy_signal, "REOPEN_S", 0.0)  # look for the file at every call
    watch = BusyWatch(tmp_path, hold_s=0.5)
    assert watch.last_activity_ns() is None and not watch.busy()  # no service ever ran here
    code = "import sys; from ingest.busy_signal import BusyBeacon; BusyBeacon(sys.argv[1]).touch()"
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, check=True)
    assert watch.busy()
    stamp = watch.last_activity_ns()
    assert 0 <= time.monotonic_ns() - stamp < 30e9  # one clock for every process
    time.sleep(0.6)
    assert not watch.busy()  # quiet for longer than hold_s
    BusyBeacon(tmp_path).touch()  # the same map, seen through the ingest's mapping
    assert watch.busy() and watch.last_activity_ns() > stamp
    watch.close()


def test_the_yielder_runs_one_call_and_rests_only_while_busy(tmp_path):
    beacon, watch = BusyBeacon(tmp_path), BusyWatch(tmp_path, hold_s=60)
    quiet = Yielder(BusyWatch(tmp_path / "elsewhere"), threads=2)
    assert quiet.slots() == 3 and quiet.may_start(2)
    beacon.touch()
    busy = Yielder(watch, threads=2, duty=0.25)
    assert busy.slots() == 1 and busy.may_start(0) and not busy.may_start(1)
    busy.finished(0.1)  # a 0.1 s call at a quarter duty: 0.3 s of rest
    assert not busy.may_start(0)
    assert 0.2 < busy.next_call_at - time.monotonic() <= 0.3
    never = Yielder(None, threads=2)  # --no-yield-to-service
    never.finished(0.1)
    assert never.slots() == 3 and never.may_start(0)


def test_every_request_to_the_service_touches_the_signal(tmp_path, model):
    data_dir = tmp_path / "data"
    app = create_app(data_dir, state=ServiceState(Settings(data_dir=data_dir), model=model))
    with running_server(app) as base:
        watch = BusyWatch(data_dir)
        first = watch.last_activity_ns()
        assert first is not None  # the readiness probe touched it
        time.sleep(0.01)
        assert httpx.get(f"{base}/genres").status_code == 200
        second = watch.last_activity_ns()
        assert second > first and watch.busy()
        assert httpx.get(f"{base}/tracks/99").status_code == 404  # errors are load too
        assert watch.last_activity_ns() > second
        watch.close()


def _library(root: Path, n: int = 3) -> Path:
    for i in range(n):
        write(root / f"t{i}.wav", chord([180.0 + 40 * i, 270.0 + 25 * i], 12.0), SR)
    return root


def _stored(data_dir: Path) -> dict[str, tuple]:
    return {
        f"{Path(path).parent.name}/{Path(path).name}": (
            t.status,
            np.frombuffer(t.embedding, dtype=np.float32),
        )
        for path, t in tracks_by_path(data_dir).items()
    }


def test_an_ingest_rests_while_the_service_is_busy_and_stores_the_same(tmp_path, model):
    root = _library(tmp_path / "music")
    calm = run_ingest([root], tmp_path / "calm", model, batch_size=2)
    assert calm.analysed == 3 and calm.yielded_seconds == 0.0

    busy_dir = tmp_path / "busy"
    Catalog(busy_dir).close()
    beacon, stop = BusyBeacon(busy_dir), threading.Event()

    def serve_forever() -> None:  # what a service under steady load does to the map
        while not stop.is_set():
            beacon.touch()
            time.sleep(0.02)

    toucher = threading.Thread(target=serve_forever, daemon=True)
    toucher.start()
    try:
        busy = run_ingest([root], busy_dir, model, batch_size=2)
        ignoring = run_ingest(  # --no-yield-to-service: the same load, no resting
            [_library(tmp_path / "more")], busy_dir, model, batch_size=2, yield_to_service=False
        )
    finally:
        stop.set()
        toucher.join()
    assert busy.analysed == 3 and busy.failed == []
    assert busy.yielded_seconds > 0  # it rested between network calls
    assert ignoring.analysed == 3 and ignoring.yielded_seconds == 0.0
    calm_rows, busy_rows = _stored(tmp_path / "calm"), _stored(busy_dir)
    for name, (status, embedding) in calm_rows.items():
        assert busy_rows[name][0] == status == "ok"
        np.testing.assert_allclose(busy_rows[name][1], embedding, atol=1e-5)


# -- every part of the ingest yields: short network calls, pacing decode workers ----------


class _Toucher:
    """What a service under steady load does to the map: a touch every 20 ms, in a thread."""

    def __init__(self, data_dir: Path) -> None:
        self.beacon, self.stop = BusyBeacon(data_dir), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.beacon.touch()
            time.sleep(0.02)

    def __enter__(self) -> _Toucher:
        self.beacon.touch()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.beacon.close()


def test_network_calls_take_few_segments_only_while_the_service_is_busy(tmp_path):
    quiet = Yielder(BusyWatch(tmp_path / "elsewhere"), threads=2)
    assert quiet.batch_limit(32) == 32
    with _Toucher(tmp_path):
        busy = Yielder(BusyWatch(tmp_path, hold_s=60), threads=2)
        assert busy.batch_limit(32) == busy_signal.BUSY_BATCH < 32
        assert busy.batch_limit(2) == 2  # never more than asked for
    assert Yielder(None, threads=2).batch_limit(32) == 32  # --no-yield-to-service


def _spin(pace: busy_signal.Pacer, cpu_s: float) -> None:
    """Burn ``cpu_s`` of CPU in small steps, calling ``pace`` between them."""
    end = time.process_time() + cpu_s
    while time.process_time() < end:
        sum(range(2000))
        pace()


def test_a_pacer_rests_in_proportion_only_while_busy(tmp_path):
    never = busy_signal.Pacer(None)
    _spin(never, 0.05)
    assert never.rests == 0
    quiet = busy_signal.Pacer(BusyWatch(tmp_path, hold_s=60), quantum_s=0.005)
    _spin(quiet, 0.05)  # no service has ever touched the map
    assert quiet.rests == 0 and quiet.rested_s == 0.0
    with _Toucher(tmp_path):
        pacer = busy_signal.Pacer(BusyWatch(tmp_path, hold_s=60), duty=0.5, quantum_s=0.005)
        _spin(pacer, 0.05)
    assert pacer.rests >= 5  # one rest per 5 ms quantum of the 50 ms of work
    # at half duty it rests about as long as it worked; never longer than MAX_REST_S a time
    assert 0.04 <= pacer.rested_s <= pacer.rests * busy_signal.MAX_REST_S


def test_a_decode_worker_rests_while_the_service_is_busy_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(busy_signal, "REOPEN_S", 0.0)
    from embeddings.frontend import FrontendConfig
    from ingest.messages import Chunk, Done
    from ingest.worker import Task, analyse_file

    path = write(tmp_path / "long.wav", chord([220.0, 330.0], 60.0), SR)
    data_dir = tmp_path / "data"
    data_dir.mkdir()

    def analyse(pace) -> tuple[int, Done]:
        sent: list = []
        analyse_file(Task(0, str(path)), FrontendConfig(), sent.append, pace=pace)
        segments = sum(len(m.features) for m in sent if isinstance(m, Chunk))
        return segments, sent[-1]

    alone_segments, alone = analyse(lambda: None)
    pacer = busy_signal.Pacer(BusyWatch(data_dir, hold_s=0.3), quantum_s=0.002)
    with _Toucher(data_dir):
        busy_segments, busy = analyse(pacer)
    assert pacer.rests > 0 and pacer.rested_s > 0  # it stood aside while the service worked
    assert isinstance(busy, Done) and busy_segments == alone_segments == busy.n_segments
    assert busy.peak == alone.peak  # the same analysis, only slower
    time.sleep(0.4)  # the service has been quiet for longer than hold_s
    rests = pacer.rests
    again_segments, again = analyse(pacer)
    assert isinstance(again, Done) and again_segments == alone_segments
    assert pacer.rests == rests  # back to full speed: no rest once the service is quiet


def test_a_decode_worker_process_yields_under_permanent_load_and_still_finishes(tmp_path):
    import multiprocessing as mp

    from embeddings.frontend import FrontendConfig
    from ingest.messages import Done
    from ingest.worker import Task, worker_main

    path = write(tmp_path / "t.wav", chord([220.0, 330.0], 20.0), SR)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    with _Toucher(data_dir):
        proc = ctx.Process(
            target=worker_main,
            args=(0, FrontendConfig().to_dict(), frozenset(), tasks, results),
            kwargs={"busy_dir": str(data_dir)},
            daemon=True,
        )
        proc.start()
        tasks.put(Task(1, str(path)))
        tasks.put(None)
        messages = []
        while not messages or not isinstance(messages[-1], Done):
            messages.append(results.get(timeout=120))
        proc.join(timeout=30)
    assert proc.exitcode == 0
    assert messages[-1].n_segments > 0
