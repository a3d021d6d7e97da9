"""The standing torture suite, fast version: a fuzzed folder and a kill-and-resume loop.

``bench/torture.py`` runs the long versions (hundreds of files, many kills, clients
during an ingest). Here: a fixed-seed fuzz set covering every hostile case issue 28
found must end in one run, index every good file, explain every failure, and leave
a consistent catalog, also after SIGKILLs at random moments.
"""

from __future__ import annotations

import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fuzz_files import build_fuzz_folder

from helpers import assert_index_consistent, run_ingest, tracks_by_path

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    return build_fuzz_folder(tmp_path_factory.mktemp("fuzz") / "music", count=24, seed=28)


def _check_catalog(data_dir: Path, fuzz) -> dict:
    rows = tracks_by_path(data_dir)
    for path in fuzz.good:
        assert path in rows, f"good file not indexed: {path!r}"
        assert rows[path].status == "ok", (path, rows[path].error)
    for path in fuzz.specials:
        assert path in rows, f"not recorded: {path!r}"
        assert rows[path].status == "failed" and rows[path].error
    for row in rows.values():
        if row.status == "failed":
            assert row.error, f"failed without a reason: {row.path!r}"
        if row.status == "ok":
            assert row.confidence is not None and math.isfinite(row.confidence)
    with sqlite3.connect(data_dir / "catalog.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ok = conn.execute("SELECT count(*) FROM tracks WHERE status = 'ok'").fetchone()[0]
        probabilities = [p for (p,) in conn.execute(
            "SELECT probability FROM track_genres JOIN tracks ON tracks.id = track_id "
            "WHERE status = 'ok'"
        )]  # fmt: skip
        assert len(probabilities) == 10 * ok  # every analysed track has all ten genres
        assert all(math.isfinite(p) for p in probabilities)
        dupes = conn.execute("SELECT count(*) - count(DISTINCT path) FROM tracks").fetchone()[0]
        assert dupes == 0
    assert_index_consistent(data_dir)
    return rows


def test_a_fuzzed_folder_ends_in_one_run_with_every_failure_explained(fuzz, tmp_path, model):
    data_dir = tmp_path / "data"
    summary = run_ingest([fuzz.root], data_dir, model, stall_seconds=60)
    rows = _check_catalog(data_dir, fuzz)
    expected = len(fuzz.good) + len(fuzz.hostile) + len(fuzz.specials)
    assert len(rows) == expected
    assert summary.analysed + len(summary.failed) == expected
    again = run_ingest([fuzz.root], data_dir, model, stall_seconds=60)
    assert (again.analysed, again.failed) == (0, [])  # failures are not retried every scan
    assert again.skipped == expected


def _sonic_ingest(root: Path, data_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ui.cli", "ingest", str(root), "--data-dir", str(data_dir),
         "--no-progress", "--no-heatmaps", "--workers", "2"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the kill reaches the workers too
    )  # fmt: skip


def test_sigkill_at_random_moments_then_resume_gives_a_complete_catalog(fuzz, tmp_path):
    data_dir = tmp_path / "data"
    rng = random.Random(7)
    for _ in range(3):
        proc = _sonic_ingest(fuzz.root, data_dir)
        time.sleep(rng.uniform(4.0, 12.0))  # start-up, migrations, planning or analysis
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    final = _sonic_ingest(fuzz.root, data_dir)
    _, err = final.communicate(timeout=600)
    assert final.returncode == 0, err.decode()[-2000:]
    _check_catalog(data_dir, fuzz)
