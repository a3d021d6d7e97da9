"""A data directory can be copied or moved: artefact paths are stored relative to it.

Real ingests, a real ``cp -a`` of the data directory, real Alembic migrations from
revision 0003 on a catalog whose rows hold old absolute paths.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import numpy as np
from alembic import command

from catalog.db import _alembic_config, create_catalog_engine
from catalog.paths import resolve_stored, stored_path
from catalog.queries import track_details, waveform_overview
from catalog.store import Catalog
from helpers import run_ingest, tracks_by_path
from ingest.overview import OverviewBuilder


def _copy(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    return dst


def test_ingest_stores_heatmaps_relative_and_a_copied_data_dir_shows_them(
    library, tmp_path, model
):
    data_dir = tmp_path / "data"
    run_ingest([library.good["noise_flac"]], data_dir, model)
    track = tracks_by_path(data_dir)[str(library.good["noise_flac"])]
    assert track.heatmap_path.startswith("heatmaps/")  # relative, POSIX
    copy = _copy(data_dir, tmp_path / "elsewhere")
    subprocess.run(["rm", "-rf", str(data_dir)], check=True)  # the old one is gone
    with Catalog(copy) as catalog:
        details = track_details(catalog, track.id)
    png = Path(details["artefacts"]["heatmap"])
    assert png.is_file() and png.is_relative_to(copy)
    assert details["explanation"]["heatmap"] == str(png)
    assert "The model listened" in details["explanation"]["sentence"]


def test_ingest_stores_a_waveform_overview(library, data_dir, model):
    run_ingest([library.good["noise_flac"]], data_dir, model)
    track = tracks_by_path(data_dir)[str(library.good["noise_flac"])]
    with Catalog(data_dir) as catalog:
        overview = waveform_overview(catalog, track.id)
    assert overview.shape[0] == 2 and 50 <= overview.shape[1] <= 400
    assert (overview[0] <= overview[1]).all() and overview[1].max() > 0.05


def test_overview_builder_keeps_the_extremes_across_block_boundaries():
    sr = 1000
    signal = np.zeros(10 * sr, dtype=np.float32)
    signal[7_523] = 0.9
    signal[2_001] = -0.7
    builder = OverviewBuilder(sr)
    for start in range(0, len(signal), 333):  # blocks that cut windows in two
        builder.push(signal[start : start + 333])
    out = builder.finish(points=100)
    assert out.shape == (2, 100)
    assert np.argmax(out[1]) == 75 and np.isclose(out[1].max(), 0.9, atol=1e-3)
    assert np.argmin(out[0]) == 20 and np.isclose(out[0].min(), -0.7, atol=1e-3)


def _catalog_at_0003(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    engine = create_catalog_engine(data_dir / "catalog.db")
    config = _alembic_config(str(engine.url))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0003")
    engine.dispose()


def _insert_track(db: Path, track_id: int, heatmap: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO tracks (id, path, size, mtime_ns, status, heatmap_path, focus_low, "
            "focus_mid, focus_high, added_at, updated_at) VALUES (?, ?, 1, 1, 'ok', ?, 0.2, "
            "0.5, 0.3, '2026-01-01', '2026-01-01')",
            (track_id, f"/music/{track_id}.flac", heatmap),
        )


def test_migration_rewrites_absolute_paths_inside_the_data_dir(tmp_path):
    old = tmp_path / "old"
    _catalog_at_0003(old)
    png = old / "heatmaps" / "ab" / "x.png"
    png.parent.mkdir(parents=True)
    png.write_bytes(b"\x89PNG")
    _insert_track(old / "catalog.db", 1, str(png))  # as code before 0006 wrote it
    _insert_track(old / "catalog.db", 2, "/srv/other/place.png")  # outside: left alone
    # copied before the migration ever ran: the rows still name the old directory
    new = _copy(old, tmp_path / "new")
    with Catalog(new) as catalog:
        with sqlite3.connect(new / "catalog.db") as conn:
            rows = dict(conn.execute("SELECT id, heatmap_path FROM tracks"))
        assert rows == {1: "heatmaps/ab/x.png", 2: "/srv/other/place.png"}
        assert track_details(catalog, 1)["artefacts"]["heatmap"] == str(new / rows[1])
    with sqlite3.connect(old / "catalog.db") as conn:  # the original was not touched
        assert conn.execute("SELECT heatmap_path FROM tracks WHERE id=1").fetchone()[0] == str(png)


def test_reading_resolves_an_absolute_path_into_another_data_dir(tmp_path):
    root = tmp_path / "now"
    (root / "heatmaps" / "cd").mkdir(parents=True)
    (root / "heatmaps" / "cd" / "y.png").write_bytes(b"png")
    moved = resolve_stored(root, "/mnt/before/data/heatmaps/cd/y.png")
    assert moved == root / "heatmaps" / "cd" / "y.png"
    assert resolve_stored(root, "heatmaps/cd/y.png") == moved
    assert resolve_stored(root, "/mnt/before/data/heatmaps/cd/gone.png") == Path(
        "/mnt/before/data/heatmaps/cd/gone.png"
    )
    assert stored_path(root, root / "stems" / "s" / "vocals.flac") == "stems/s/vocals.flac"
    assert stored_path(root, "/elsewhere/z.png") == "/elsewhere/z.png"
