"""Exact search while small, an approximate index chosen by size beyond; reloads by version."""

from __future__ import annotations

import numpy as np
import pytest

from catalog import ann as approximate
from catalog.ann import choose_kind
from catalog.index import VectorIndex, read_header


def clustered(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim)).astype(np.float32)
    x = centres[rng.integers(0, 20, n)] + 0.4 * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_kind_is_chosen_by_size():
    assert choose_kind(0) == choose_kind(approximate.EXACT_MAX_VECTORS) == "flat"
    assert choose_kind(approximate.EXACT_MAX_VECTORS + 1) == "hnsw"
    assert choose_kind(approximate.HNSW_MAX_VECTORS) == "hnsw"
    assert choose_kind(approximate.HNSW_MAX_VECTORS + 1) == "ivf"
    assert approximate.ivf_lists(1_000_000) == 2048 and approximate.ivf_lists(10) == 256


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_search_agrees_with_exact(kind, monkeypatch):
    monkeypatch.setattr(approximate, "EXACT_MAX_VECTORS", 1000)
    monkeypatch.setattr(approximate, "HNSW_MAX_VECTORS", 5000 if kind == "hnsw" else 2000)
    monkeypatch.setattr(approximate, "IVF_TRAIN_PER_LIST", 10)
    x = clustered(4000)
    index = VectorIndex(64, "m", 1)
    ids = np.arange(100, 4100)
    index.upsert(ids, x)
    assert index.kind == kind
    assert index.ann_status()["searching_with"] == "flat"  # nothing built yet: exact
    index.ensure_ann(background=False)
    status = index.ann_status()
    assert status["searching_with"] == status["wanted"] == kind and not status["building"]
    assert status["params"]["tuned_recall_at_10"] >= approximate.TARGET_RECALL
    assert set(status["params"]) >= {"efSearch" if kind == "hnsw" else "nprobe"}
    hits = 0
    for q in range(0, 4000, 40):
        exact = {i for i, _ in index.search(x[q], 11, exact=True)}
        approx = index.search(x[q], 11)
        assert approx[0][0] == ids[q]  # a track is its own nearest neighbour
        hits += len(exact & {i for i, _ in approx})
    assert hits / (100 * 11) >= 0.95
    # New ids are added to the approximate index; replacing or removing drops it.
    index.upsert(np.array([9000]), clustered(1, seed=5))
    assert index.ann_status()["searching_with"] == kind
    assert index.search(clustered(1, seed=5)[0], 1)[0][0] == 9000
    index.upsert(np.array([100]), clustered(1, seed=6))
    assert index.ann_status()["searching_with"] == "flat"
    assert index.search(clustered(1, seed=6)[0], 1)[0][0] == 100
    index.ensure_ann(background=True)
    index._building.join(timeout=60)
    assert index.ann_status()["searching_with"] == kind
    index.remove(np.array([9000]))
    assert index.ann_status()["searching_with"] == "flat"
    assert 9000 not in {i for i, _ in index.search(clustered(1, seed=5)[0], 5)}


def test_file_format_is_unchanged_and_header_reads_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(approximate, "EXACT_MAX_VECTORS", 10)
    x = clustered(300)
    index = VectorIndex(64, "model-x", version=42)
    index.upsert(np.arange(300), x)
    index.ensure_ann(background=False)
    index.save(tmp_path / "index.faiss")
    header = read_header(tmp_path / "index.faiss")
    assert (header.version, header.model_id, header.dim) == (42, "model-x", 64)
    loaded = VectorIndex.load(tmp_path / "index.faiss")
    assert len(loaded) == 300 and loaded.ann_status()["searching_with"] == "flat"
    ids, vectors = loaded.vectors()
    np.testing.assert_array_equal(ids, np.arange(300))
    np.testing.assert_allclose(vectors, x)
    (tmp_path / "bad.faiss").write_bytes(b"nonsense")
    with pytest.raises(ValueError):
        read_header(tmp_path / "bad.faiss")


def test_tuning_takes_the_least_effort_that_reaches_the_target():
    x = clustered(3000)
    ids = np.arange(3000)
    ann = approximate.build_ann(x, ids, "ivf")
    low = approximate.tune_ann(ann, "ivf", x, ids, target=0.3)
    high = approximate.tune_ann(ann, "ivf", x, ids, target=0.999)
    assert low["nprobe"] == approximate.IVF_NPROBE_CHOICES[0] and low["tuned_recall_at_10"] >= 0.3
    assert high["nprobe"] >= low["nprobe"] and high["tuned_recall_at_10"] >= 0.999
    assert ann.nprobe == high["nprobe"]  # left at the tuned value


def test_searches_run_safely_while_another_thread_changes_the_index():
    """The service catches up in place in a worker thread while requests search."""
    import threading

    from catalog.index import VectorIndex

    rng = np.random.default_rng(5)
    dim, n = 32, 4000
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(dim, "m", 0)
    index.upsert(np.arange(n), vectors)
    errors: list[BaseException] = []
    stop = threading.Event()

    def change() -> None:
        try:
            for round_ in range(150):
                ids = rng.choice(n, 200, replace=False)
                index.remove(ids)
                index.upsert(ids, vectors[ids])  # storage moves under the searchers
                index.upsert(np.arange(n, n + 50) + round_ * 50, vectors[:50])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            stop.set()

    def search() -> None:
        try:
            while not stop.is_set():
                q = int(rng.integers(n))
                hits = index.search(vectors[q], 5, exact=True)
                assert len(hits) == 5 and all(-1.001 <= s <= 1.001 for _, s in hits)
                assert all(0 <= i < n + 150 * 50 for i, _ in hits)
                index.vector(hits[0][0])  # may be mid-replacement (None), never a crash
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=change)]
    threads += [threading.Thread(target=search) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(index) == n + 150 * 50


def test_a_catalog_index_keeps_ivf_alone_once_built(tmp_path, monkeypatch):
    """compact_ivf: the IVF becomes the only copy, and still does all the exact index did."""
    monkeypatch.setattr(approximate, "EXACT_MAX_VECTORS", 500)
    monkeypatch.setattr(approximate, "HNSW_MAX_VECTORS", 1000)
    monkeypatch.setattr(approximate, "IVF_TRAIN_PER_LIST", 10)
    x = clustered(3000)
    ids = np.arange(100, 3100)
    index = VectorIndex(64, "m", 1)
    index.compact_ivf = True
    index.upsert(ids, x)
    index.ensure_ann(background=False)
    status = index.ann_status()
    assert status["searching_with"] == "ivf" and not status["exact_index_kept"]
    assert index.index is index._ann  # one copy of the vectors, not two

    brute = x @ x[7]
    assert [i for i, _ in index.search(x[7], 10, exact=True)] == list(ids[np.argsort(-brute)[:10]])
    assert index.search(x[7], 1)[0][0] == ids[7]
    np.testing.assert_array_equal(index.ids(), ids)
    np.testing.assert_allclose(index.vector(ids[3]), x[3])
    np.testing.assert_allclose(index.vectors_of([int(ids[4]), int(ids[5])]), x[4:6])

    new = clustered(1, seed=9)
    index.upsert(np.array([ids[0]]), new)  # a replaced vector: the IVF follows, nothing dropped
    index.upsert(np.array([9000]), clustered(1, seed=8))
    index.remove(np.array([ids[1], 123456]))  # one absent id: ignored
    assert len(index) == 3000 and index.ann_status()["searching_with"] == "ivf"
    assert index.search(new[0], 1, exact=True)[0][0] == ids[0]
    np.testing.assert_allclose(index.vector(ids[0]), new[0])
    assert index.vector(ids[1]) is None and 9000 in set(index.ids().tolist())

    index.save(tmp_path / "index.faiss")  # the IVF is saved: a restart need not build it
    loaded = VectorIndex.load(tmp_path / "index.faiss")
    assert loaded.ann_status()["searching_with"] == "ivf" and len(loaded) == 3000
    assert read_header(tmp_path / "index.faiss").version == 1
    np.testing.assert_array_equal(loaded.ids(), index.ids())
    loaded.remove(np.array([ids[2]]))
    assert loaded.vector(ids[2]) is None
    nlist = loaded.index.nlist
    loaded.ensure_ann(background=False)  # not outgrown: nothing is built again
    assert loaded.index.nlist == nlist and not loaded._ivf_outgrown()
    with monkeypatch.context() as m:  # as if the library had grown fourfold since the build
        m.setattr(approximate, "ivf_lists", lambda n: 2 * nlist)
        assert loaded._ivf_outgrown()
        loaded.ensure_ann(background=False)
        assert loaded.index.nlist == 2 * nlist and not loaded.ann_status()["exact_index_kept"]
    assert len(loaded) == 2999 and loaded.vector(ids[2]) is None

    loaded.remove(ids[10:2600])  # shrunk below IVF sizes: the exact index comes back
    assert loaded.kind == "flat"
    loaded.ensure_ann(background=False)
    status = loaded.ann_status()
    assert status["searching_with"] == "flat" and status["exact_index_kept"]
    assert len(loaded.ids()) == len(loaded) == 3000 - 1 - 2590  # ids[2] and ids[10:2600] went
    np.testing.assert_allclose(loaded.vector(ids[3]), x[3])
