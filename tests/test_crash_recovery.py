"""A run killed with SIGKILL mid-ingest leaves a catalog the next run completes.

On SQLite and on a real PostgreSQL server (``catalog_url``): the ``sonic``
subprocesses find the PostgreSQL URL in ``$SONIC_DATABASE_URL``.
"""

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


def _committed(database: Path, url: str | None) -> int:
    if url is not None:
        return _committed_postgres(url)
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM tracks").fetchone()[0]
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def _committed_postgres(url: str) -> int:
    import psycopg

    from catalog.db import libpq_conninfo, parse_database_url

    with psycopg.connect(libpq_conninfo(parse_database_url(url))) as conn:
        try:
            return conn.execute("SELECT count(*) FROM tracks").fetchone()[0]
        except psycopg.errors.UndefinedTable:  # schema not created yet
            return 0


def _segments_match(data_dir: Path) -> None:
    """Every committed track is whole: as many segment rows as it says it has."""
    from sqlalchemy import func, select

    from catalog.schema import Segment, Track
    from catalog.store import Catalog

    with Catalog(data_dir) as catalog, catalog.sessions() as s:
        counts = dict(
            s.execute(select(Segment.track_id, func.count()).group_by(Segment.track_id)).all()
        )
        for track_id, n_segments in s.execute(select(Track.id, Track.n_segments)):
            assert counts.get(track_id, 0) == n_segments


def _sonic(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ui.cli", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_sigkill_mid_ingest_then_rerun_gives_a_consistent_catalog(tmp_path, catalog_url):
    library = tmp_path / "music"
    for i in range(40):
        audio = chord([110 + 7 * i, 220 + 11 * i], 9, 22050) + noise(9, 22050, seed=i, amp=0.05)
        write(library / f"album{i % 4}" / f"track{i:02d}.flac", audio, 22050)
    data_dir = tmp_path / "data"

    proc = _sonic("ingest", str(library), "--data-dir", str(data_dir), "--no-progress")
    deadline = time.monotonic() + 240
    while _committed(data_dir / "catalog.db", catalog_url) < 5:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "ingest made no progress"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the ingest and its decode workers
    proc.wait()

    rows = tracks_by_path(data_dir)
    assert 5 <= len(rows) < 40, "the kill should land mid-ingest"
    _segments_match(data_dir)

    rerun = _sonic("ingest", str(library), "--data-dir", str(data_dir), "--no-progress", "--json")
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    rows = tracks_by_path(data_dir)
    assert len(rows) == 40
    assert {t.status for t in rows.values()} == {"ok"}
    assert len({t.path for t in rows.values()}) == 40
    assert_index_consistent(data_dir)
