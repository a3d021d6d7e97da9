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
