"""A PostgreSQL catalog at IVF sizes builds IVF straight from the database.

Issue 25: with the exact index filled first and the IVF built beside it, every
vector was held twice while the IVF was built (about 5 GiB at 1M tracks). Here the
IVF is the only structure ever made: trained on a sample read from the database,
filled a batch at a time. IVF is forced at a few thousand vectors by lowering
``catalog.ann``'s thresholds (``choose_kind`` reads them at each call).
"""

from __future__ import annotations

from datetime import datetime

import faiss
import numpy as np
import pytest
from sqlalchemy import insert, text

from catalog import ann as approximate
from catalog import index_builds
from catalog.index import VectorIndex
from catalog.neighbours import similar
from catalog.records import Analysis, AudioFacts, FileFacts, Tags
from catalog.schema import Track
from catalog.store import Catalog

DIM, N, MODEL = 64, 4000, "m"
GENRES = ["a", "b"]


@pytest.fixture
def pg_url(postgres_server, monkeypatch) -> str:
    url = postgres_server.new_database("ivfdb")
    monkeypatch.setenv("SONIC_DATABASE_URL", url)
    return url


@pytest.fixture
def ivf_at_small_sizes(monkeypatch) -> None:
    """IVF above 2000 vectors, small batches, so the stream really comes in parts."""
    monkeypatch.setattr(approximate, "EXACT_MAX_VECTORS", 500)
    monkeypatch.setattr(approximate, "HNSW_MAX_VECTORS", 2000)
    monkeypatch.setattr(approximate, "IVF_TRAIN_PER_LIST", 10)
    monkeypatch.setattr(index_builds, "BATCH_ROWS", 500)
    monkeypatch.setattr(index_builds, "ID_BATCH_ROWS", 700)


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((32, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 32, n)] + 0.5 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _fill(catalog: Catalog, vectors: np.ndarray) -> None:
    now = datetime(2024, 1, 1)
    version = catalog.index_version()
    rows = [
        {
            "id": i + 1, "path": f"/music/{i:06d}.flac", "size": 1, "mtime_ns": 0,
            "status": "ok", "model_id": MODEL, "embedding": v.tobytes(),
            "embedding_version": version, "added_at": now, "updated_at": now,
        }
        for i, v in enumerate(vectors)
    ]  # fmt: skip
    with catalog.sessions.begin() as s:
        s.execute(insert(Track), rows)
        if catalog.is_postgres:  # explicit ids: move the id sequence past them
            s.execute(
                text("SELECT setval(pg_get_serial_sequence('tracks', 'id'), max(id)) FROM tracks")
            )


def _record(catalog: Catalog, name: str, vector: np.ndarray) -> int:
    """One track through the ingest's own write path (which advances the index)."""
    facts = FileFacts(f"/music/new/{name}.flac", 1000, 1, name.encode().hex(), "flac")
    probs = np.array([0.6, 0.4], dtype=np.float32)
    analysis = Analysis(MODEL, GENRES, probs, vector, probs[None, :], 3.0)
    return catalog.record_analysis(facts, Tags(name, "X", "Y", 1, 3.0), AudioFacts(3.0, 22050, 1),
                                   analysis)  # fmt: skip


def _no_exact_fill(monkeypatch) -> None:
    """Make any filling or copying of an exact index fail the test."""

    def refuse(*_a, **_k):
        raise AssertionError("the exact index must not be filled or copied at IVF sizes")

    monkeypatch.setattr(VectorIndex, "_copy_vectors", refuse)
    real_upsert = VectorIndex.upsert

    def upsert(self, ids, vectors):
        if not self._compact:
            refuse()
        real_upsert(self, ids, vectors)

    monkeypatch.setattr(VectorIndex, "upsert", upsert)


def test_ivf_is_built_from_the_database_without_an_exact_index(
    tmp_path, pg_url, ivf_at_small_sizes, monkeypatch
):
    x = _vectors(N)
    with Catalog(tmp_path / "a") as catalog:
        catalog.activate_model(MODEL, GENRES, DIM)
        _fill(catalog, x)

    with monkeypatch.context() as m:
        _no_exact_fill(m)
        with Catalog(tmp_path / "a") as catalog:
            index = catalog.index()
            status = index.ann_status()
            # the object: an IVF is the index itself, the only copy; no exact one exists
            assert isinstance(index.index, faiss.IndexIVFFlat), type(index.index)
            assert index.index is index._ann and index._compact
            assert status["searching_with"] == "ivf" and not status["exact_index_kept"]
            assert status["params"]["built_from"] == "database"
            assert status["params"]["tuned_recall_at_10"] >= 0.9
            assert len(index) == N
            np.testing.assert_array_equal(index.ids(), np.arange(1, N + 1))
            np.testing.assert_allclose(index.vector(17), x[16])
            assert (tmp_path / "a" / "index.faiss").exists()
            health = catalog.index_health()
            assert health["consistent"] and health["file_vectors"] == N, health

            # similar: neighbours consistent with exact search over the same vectors
            hits = total = 0
            for q in range(0, N, 97):
                want = set((np.argsort(-(x @ x[q]))[1:11] + 1).tolist())
                got = {t["id"] for t in similar(catalog, q + 1, k=10)}
                hits, total = hits + len(want & got), total + 10
            assert hits / total >= 0.9, hits / total
            index.ensure_ann(background=False)  # nothing to build: the IVF is current
            assert catalog.index() is index and index.index is index._ann


def test_the_ivf_follows_changes_and_reloads(tmp_path, pg_url, ivf_at_small_sizes, monkeypatch):
    x = _vectors(N)
    with Catalog(tmp_path / "a") as catalog:
        catalog.activate_model(MODEL, GENRES, DIM)
        _fill(catalog, x)
    _no_exact_fill(monkeypatch)

    with Catalog(tmp_path / "a") as catalog:
        index = catalog.index()
        assert index._compact
        # added after the build (the ingest's write path): found as its own neighbour
        new = _vectors(1, seed=5)[0]
        new_id = _record(catalog, "new", new)
        assert index.search(new, 1)[0][0] == new_id and len(index) == N + 1
        # replaced: the IVF holds the new vector
        replaced = _vectors(1, seed=6)[0]
        assert _record(catalog, "new", replaced) == new_id
        np.testing.assert_allclose(index.vector(new_id), replaced)
        # removed: gone from search and from the index
        catalog.mark_missing([5, 6])
        assert index.vector(5) is None and len(index) == N - 1
        assert 5 not in {t["id"] for t in similar(catalog, 7, k=50)}
        assert all(i != 6 for i, _ in index.search(x[5], 5))
        catalog.save_index()
        assert catalog.index_health()["consistent"]

        # another process commits: this one catches up from the database (sync_index)
        with Catalog(tmp_path / "b") as other:
            other_index = other.index()  # its own data dir, as on another machine: rebuilt
            assert other_index._compact and len(other_index) == N - 1
            other_id = _record(other, "other", _vectors(1, seed=7)[0])
            other.mark_missing([8])
        assert catalog.index_file_changed() and catalog.sync_index()
        assert other_id in set(index.ids().tolist()) and index.vector(8) is None
        assert len(index) == N - 1 and index.version == catalog.index_version()
        catalog.save_index()
        ids = index.ids()

    # a second catalog object on the same data dir loads the IVF file, builds nothing
    monkeypatch.setattr(
        index_builds, "stream_indexable", lambda *_a: pytest.fail("reloading must not rebuild")
    )
    with Catalog(tmp_path / "a") as again:
        loaded = again.index()
        assert not again.index_repaired and loaded._compact
        assert isinstance(loaded.index, faiss.IndexIVFFlat)
        assert loaded.ann_status()["params"].get("loaded") is True
        np.testing.assert_array_equal(loaded.ids(), ids)
        assert loaded.search(replaced, 1)[0][0] == new_id
        assert [t["id"] for t in similar(again, 1, k=3)]
        assert again.index_health()["consistent"]


def test_below_ivf_sizes_and_on_sqlite_the_exact_index_is_built_as_before(
    tmp_path, postgres_server, ivf_at_small_sizes, monkeypatch
):
    """HNSW sizes on PostgreSQL, and IVF sizes on SQLite: the exact index, unchanged."""
    monkeypatch.delenv("SONIC_DATABASE_URL", raising=False)
    x = _vectors(1500)
    with Catalog(tmp_path / "pg", postgres_server.new_database("hnsw")) as catalog:
        catalog.activate_model(MODEL, GENRES, DIM)
        _fill(catalog, x)
        index = catalog.index()
        assert isinstance(index.index, faiss.IndexIDMap2) and not index._compact
    x = _vectors(N)
    with Catalog(tmp_path / "lite") as catalog:
        catalog.activate_model(MODEL, GENRES, DIM)
        _fill(catalog, x)
        index = catalog.index()
        assert isinstance(index.index, faiss.IndexIDMap2) and len(index) == N
        assert index.ann_status()["exact_index_kept"]
