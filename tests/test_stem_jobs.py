"""Stem separation as a job of ``sonic serve --models-dir``, with real (tiny) Demucs weights.

A randomly initialised HTDemucs is saved as a local weights folder under Demucs'
default name, ``sonic serve --models-dir`` is started on it in a subprocess, and
the REST API is driven as a client would: the job reports its chunks (``chunk N /
M``) counting up to the total, finishes with the stems cached, and a second request
gets them from the cache; a cancelled job ends "cancelled" at its next chunk with
nothing recorded and no stem files left behind.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from demucs_fixtures import SOURCES, write_tiny_weights
from service_fixtures import free_port

from audio_fixtures import chord, clicks, tag, tone, write
from catalog.stems import get_stem_set
from catalog.store import Catalog
from helpers import run_ingest, tracks_by_path
from ingest.hashing import content_hash
from ingest.stems import StemSettings, stem_directory
from ui.jobs import JobCancelled, Jobs

REPO = Path(__file__).resolve().parents[1]
SECONDS = 16.0  # 22 one-second chunks: long enough to watch, and to cancel mid-way
SR = 22050


@pytest.fixture(scope="module")
def served(tmp_path_factory, model):
    tmp = tmp_path_factory.mktemp("stem_jobs")
    music = tmp / "music"
    beat = clicks(SECONDS)
    files = {
        "whole": write(music / "whole.flac", chord([220, 277, 330], SECONDS) + beat, SR),
        "cancelled": write(music / "cancelled.flac", tone(330, SECONDS) + 0.5 * beat, SR),
    }
    for i, (name, path) in enumerate(files.items()):
        tag(path, name.title(), "Stems", "Jobs", i + 1)
    data_dir = tmp / "data"
    assert run_ingest([music], data_dir, model).analysed == 2
    weights = write_tiny_weights(tmp / "demucs weights")
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the tiny model is latency-bound
    env.pop("SONIC_API_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.cli", "serve", "--data-dir", str(data_dir), "--port",
         str(port), "--models-dir", str(weights), "--device", "cpu", "--json"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        json.loads(proc.stdout.readline())
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(base + "/health", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline
                time.sleep(0.3)
        ids = {p: t.id for p, t in tracks_by_path(data_dir).items()}
        with httpx.Client(base_url=base, timeout=60) as client:
            yield {
                "client": client,
                "data_dir": data_dir,
                "files": files,
                "id": {name: ids[str(path)] for name, path in files.items()},
            }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def watch(client: httpx.Client, job_id: str, until=lambda job: False) -> list[dict]:
    """Poll a job until it ends (or ``until`` holds); every answer, in order."""
    seen = []
    deadline = time.monotonic() + 300
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        seen.append(job)
        if job["status"] not in ("queued", "running") or until(job):
            return seen
        assert time.monotonic() < deadline, job
        time.sleep(0.02)


def stem_files(data_dir: Path, audio: Path) -> list[Path]:
    """Every file in the audio's stem folder (default settings), the lock aside."""
    with Catalog(data_dir) as catalog:
        folder = stem_directory(catalog, StemSettings().key(content_hash(audio)))
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".lock")


def test_a_job_counts_chunks_up_to_the_total_and_a_second_request_is_cached(served):
    client, track_id = served["client"], served["id"]["whole"]
    started = client.post(f"/tracks/{track_id}/stems")
    assert started.status_code == 202
    seen = watch(client, started.json()["job_id"])
    job = seen[-1]
    assert job["status"] == "done", job
    counted = [(j["chunks_done"], j["chunks_total"]) for j in seen if j["chunks_done"]]
    done = [d for d, _ in counted]
    assert done == sorted(done) and len(set(done)) >= 3, counted  # watched it count up
    total = job["chunks_total"]
    # 1-s chunks every 0.75 s at the model's 44.1 kHz, over the track plus Demucs' random
    # shift (up to 0.5 s of leading silence)
    stride, frames = int(0.75 * 44100), int(SECONDS * 44100)
    assert math.ceil(frames / stride) <= total <= math.ceil((frames + 22050) / stride)
    assert job["chunks_done"] == total and job["progress"] == 1.0
    assert {t for _, t in counted} == {total}  # known from the first chunk, never revised
    assert any(0 < d < total for d in done)
    assert job["detail"] == f"chunk {total} / {total}"
    assert all(j["detail"] == f"chunk {j['chunks_done']} / {total}" for j in seen
               if j["chunks_done"])  # fmt: skip
    assert job["result"]["cached"] is False
    assert set(job["result"]["urls"]) == set(SOURCES)

    files = stem_files(served["data_dir"], served["files"]["whole"])
    assert [p.name for p in files] == sorted(f"{s}.flac" for s in SOURCES)
    stamps = {p: p.stat().st_mtime_ns for p in files}
    vocals = client.get(f"/tracks/{track_id}/stems/vocals")
    assert vocals.status_code == 200 and vocals.content[:4] == b"fLaC"
    assert set(client.get(f"/tracks/{track_id}").json()["stems"]) == set(SOURCES)

    again = watch(client, client.post(f"/tracks/{track_id}/stems").json()["job_id"])[-1]
    assert again["status"] == "done" and again["result"]["cached"] is True
    assert again["chunks_done"] is None  # no chunk ran: the model was not even loaded
    assert {p: p.stat().st_mtime_ns for p in stem_files(served["data_dir"],
            served["files"]["whole"])} == stamps  # fmt: skip


def test_cancel_stops_the_separation_and_keeps_nothing(served):
    client, track_id = served["client"], served["id"]["cancelled"]
    job_id = client.post(f"/tracks/{track_id}/stems").json()["job_id"]
    running = watch(client, job_id, until=lambda j: (j["chunks_done"] or 0) >= 2)[-1]
    assert running["status"] == "running", running
    cancelled = client.post(f"/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200
    job = watch(client, job_id)[-1]
    assert job["status"] == "cancelled" and job["error"] == "cancelled on request"
    assert job["chunks_done"] < job["chunks_total"]  # stopped part-way, at a chunk
    assert job["result"] is None
    # nothing passes for this track's stems: no files, no record, no failure either
    assert stem_files(served["data_dir"], served["files"]["cancelled"]) == []
    with Catalog(served["data_dir"]) as catalog:
        key = StemSettings().key(content_hash(served["files"]["cancelled"]))
        assert get_stem_set(catalog, key) is None
    assert client.get(f"/tracks/{track_id}").json()["stems"] == {}
    assert client.get(f"/tracks/{track_id}/stems/vocals").status_code == 404
    # a finished job cannot be cancelled into anything else
    assert client.post(f"/jobs/{job_id}/cancel").json()["status"] == "cancelled"


def test_a_cancel_is_not_taken_for_a_failure_by_the_work():
    """The work's own ``except Exception`` (the stem cache records failures so) lets it by."""
    jobs = Jobs()
    started, recorded = threading.Event(), []

    def work(set_progress):
        from ui.jobs import current_job

        job = current_job()
        try:
            for i in range(1, 1000):
                job.report_chunks(i, 999)
                started.set()
                time.sleep(0.01)
        except Exception as exc:  # noqa: BLE001 - the point: this must not catch a cancel
            recorded.append(exc)
        return {}

    job = jobs.submit("stems", "k", work)
    assert started.wait(10)
    assert job.detail.startswith("chunk ") and job.detail.endswith(" / 999")
    jobs.cancel(job.id)
    deadline = time.monotonic() + 10
    while job.status == "running":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert job.status == "cancelled" and recorded == []
    assert 0 < job.chunks_done < 999 and job.progress < 0.5
    assert issubclass(JobCancelled, BaseException) and not issubclass(JobCancelled, Exception)
    jobs.shutdown()
