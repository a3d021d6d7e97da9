"""The catalog schema comes from Alembic; the FAISS file is written atomically."""

from __future__ import annotations

import os
import sqlite3

import numpy as np

from catalog.db import current_revision, head_revision
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


def test_migrations_reach_head_on_both_backends(tmp_path, catalog_url):
    """Alembic's 0001..head on SQLite and on PostgreSQL: the same tables, the right types."""
    from sqlalchemy import inspect

    Catalog(tmp_path).close()
    with Catalog(tmp_path) as catalog:  # opening again is a no-op upgrade
        assert current_revision(catalog.engine) == head_revision()
        inspector = inspect(catalog.engine)
        tables = set(inspector.get_table_names())
        assert {"tracks", "track_genres", "segments", "catalog_meta", "stem_sets", "stems"} <= (
            tables
        )
        columns = {c["name"]: c["type"] for c in inspector.get_columns("tracks")}
        assert catalog.is_postgres == (catalog_url is not None)
    if catalog_url is not None:  # paths as raw bytes, nanosecond mtimes in 64 bits
        assert type(columns["path"]).__name__ == "BYTEA"
        assert type(columns["heatmap_path"]).__name__ == "BYTEA"
        assert type(columns["mtime_ns"]).__name__ == "BIGINT"
        assert type(columns["embedding"]).__name__ == "BYTEA"


def test_odd_paths_and_texts_round_trip_on_both_backends(tmp_path, catalog_url):
    """A Latin-1 file name (not UTF-8), a NUL in a tag, an mtime past 2**31: all survive."""
    from catalog.records import FileFacts, Tags

    latin1 = os.fsdecode(b"/music/caf\xe9 \xff.flac")
    facts = FileFacts(latin1, 3 * 2**31, 1_700_000_000_123_456_789, "ab" * 32, "flac")
    with Catalog(tmp_path) as catalog:
        track_id = catalog.record_failure(facts, "bad", Tags(title="a\x00b"))
        track = catalog.track_by_path(latin1)
        assert track is not None and track.id == track_id
        assert track.path == latin1 and os.fsencode(track.path) == b"/music/caf\xe9 \xff.flac"
        assert (track.size, track.mtime_ns) == (3 * 2**31, 1_700_000_000_123_456_789)
        assert track.title in ("a\x00b", "a\\x00b")  # shown escaped where text refuses NUL
        states = catalog.file_states()
        assert [s.path for s in states] == [latin1]


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
