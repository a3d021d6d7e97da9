"""A run killed with SIGKILL mid-ingest leaves a catalog the next run completes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from audio_fixtures import chord, noise, write
from helpers import assert_index_consistent, tracks_by_path

REPO = Path(__file__).resolve().parents[1]


def _committed(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM tracks").fetchone()[0]
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def _sonic(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ui.cli", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_sigkill_mid_ingest_then_rerun_gives_a_consistent_catalog(tmp_path):
    library = tmp_path / "music"
    for i in range(40):
        audio = chord([110 + 7 * i, 220 + 11 * i], 9, 22050) + noise(9, 22050, seed=i, amp=0.05)
        write(library / f"album{i % 4}" / f"track{i:02d}.flac", audio, 22050)
    data_dir = tmp_path / "data"

    proc = _sonic("ingest", str(library), "--data-dir", str(data_dir), "--no-progress")
    deadline = time.monotonic() + 240
    while _committed(data_dir / "catalog.db") < 5:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "ingest made no progress"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the ingest and its decode workers
    proc.wait()

    rows = tracks_by_path(data_dir)
    assert 5 <= len(rows) < 40, "the kill should land mid-ingest"
    with sqlite3.connect(data_dir / "catalog.db") as conn:
        for track_id, n_segments in conn.execute("SELECT id, n_segments FROM tracks"):
            (segments,) = conn.execute(
                "SELECT count(*) FROM segments WHERE track_id = ?", (track_id,)
            ).fetchone()
            assert segments == n_segments  # every committed track is whole

    rerun = _sonic("ingest", str(library), "--data-dir", str(data_dir), "--no-progress", "--json")
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    rows = tracks_by_path(data_dir)
    assert len(rows) == 40
    assert {t.status for t in rows.values()} == {"ok"}
    assert len({t.path for t in rows.values()}) == 40
    assert_index_consistent(data_dir)
