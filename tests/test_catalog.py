"""The catalog schema comes from Alembic; the FAISS file is written atomically."""

from __future__ import annotations

import sqlite3

import numpy as np

from catalog.db import head_revision
from catalog.index import VectorIndex
from catalog.store import Catalog


def test_schema_is_created_by_alembic_at_head(tmp_path):
    Catalog(tmp_path).close()
    with sqlite3.connect(tmp_path / "catalog.db") as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert revision == head_revision()
    assert {"tracks", "track_genres", "segments", "catalog_meta"} <= tables
    Catalog(tmp_path).close()  # opening again is a no-op upgrade


def test_index_save_is_atomic_and_round_trips(tmp_path):
    index = VectorIndex(4, "m", version=7)
    vectors = np.eye(4, dtype=np.float32)
    index.upsert(np.array([10, 20, 30, 40]), vectors)
    index.upsert(np.array([20]), np.array([[0, 0, 0.6, 0.8]], dtype=np.float32))  # replace
    path = tmp_path / "index.faiss"
    index.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["index.faiss"]  # no temp file left
    loaded = VectorIndex.load(path)
    assert (loaded.version, loaded.model_id, loaded.dim, len(loaded)) == (7, "m", 4, 4)
    hits = loaded.search(np.array([0, 0, 1, 0], dtype=np.float32), 2)
    assert [h[0] for h in hits] == [30, 20]
    assert hits[1][1] == np.float32(0.6)
