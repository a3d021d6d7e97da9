"""The approximate search structures of a large index: which, how built, how tuned.

Search is exact (``IndexFlatIP``) while that stays fast. Above
``EXACT_MAX_VECTORS`` a single query scans more memory than a few milliseconds
allow, so an approximate index is built beside the exact one, chosen by size
(:func:`choose_kind`): HNSW up to ``HNSW_MAX_VECTORS``, IVF beyond (HNSW's build
time grows too long there). After each build its search effort (HNSW
``efSearch``, IVF ``nprobe``) is tuned on the library's own vectors to the least
that reaches ``TARGET_RECALL`` recall@10 (:func:`tune_ann`).

Pure functions of vectors: :class:`catalog.index.VectorIndex` decides when to build
one and keeps it, :mod:`catalog.index_builds` feeds one from the database.
"""

from __future__ import annotations

import faiss
import numpy as np

# Where exact search stops being fast on one core (a single query reads every vector:
# 25k x 512 floats is 51 MB, a few ms), and where HNSW's build time gets too long.
EXACT_MAX_VECTORS = 25_000
HNSW_MAX_VECTORS = 400_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 64  # starting points; tune_ann sets the ones this data needs
IVF_NPROBE = 32
IVF_TRAIN_PER_LIST = 40
# Search effort is tuned on the library itself after each build: the smallest
# setting whose recall@10 against exact search, on a sample of the library's own
# tracks, reaches TARGET_RECALL (the effort a given recall needs depends on the data).
TARGET_RECALL = 0.97
TUNE_QUERIES = 256
HNSW_EF_CHOICES = (16, 24, 32, 48, 64, 96, 128, 192, 256)
IVF_NPROBE_CHOICES = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)


def choose_kind(n_vectors: int) -> str:
    """The search structure for an index of this size: ``flat``, ``hnsw`` or ``ivf``."""
    if n_vectors <= EXACT_MAX_VECTORS:
        return "flat"
    if n_vectors <= HNSW_MAX_VECTORS:
        return "hnsw"
    return "ivf"


def ivf_lists(n_vectors: int) -> int:
    """Inverted lists for IVF: about 2 sqrt(n), a power of two, at least 256."""
    target = 2 * int(np.sqrt(max(n_vectors, 1)))
    return int(max(256, 1 << int(np.round(np.log2(target)))))


def build_ann(vectors: np.ndarray, ids: np.ndarray, kind: str) -> faiss.Index:
    """An approximate inner-product index over ``vectors`` keyed by ``ids``."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    dim = vectors.shape[1]
    if kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        hnsw.hnsw.efSearch = HNSW_EF_SEARCH
        index = faiss.IndexIDMap(hnsw)
        index.add_with_ids(vectors, ids)
        return index
    if kind == "ivf":
        rng = np.random.default_rng(0)
        n_train = min(len(vectors), ivf_lists(len(vectors)) * IVF_TRAIN_PER_LIST)
        sample = vectors[np.sort(rng.choice(len(vectors), n_train, replace=False))]
        return build_ivf_batched(sample, [(ids, vectors)], len(vectors))
    raise ValueError(f"unknown approximate index kind {kind!r}; choose hnsw or ivf")


def build_ivf_batched(sample: np.ndarray, batches, n_vectors: int) -> faiss.Index:
    """An IVF index trained on ``sample`` and filled from ``batches`` of (ids, vectors).

    For catalogs too large to copy: the caller streams the vectors (from the
    database, a batch at a time) instead of handing over one array of all of them,
    so besides the finished index only the training sample and one batch are held.
    ``n_vectors`` (how many will be added) sets the number of lists, as
    :func:`build_ann` does.
    """
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    dim = sample.shape[1]
    nlist = ivf_lists(n_vectors)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(sample)
    for ids, vectors in batches:
        index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, np.int64)
        )
    index.nprobe = IVF_NPROBE
    return index


class ExactTopK:
    """Exact k nearest neighbours of a few queries, over vectors seen a batch at a time.

    The truth :func:`tune_ann` needs, gathered during the same pass over the
    database that fills the index, instead of from an array of every vector.
    """

    def __init__(self, queries: np.ndarray, query_ids: np.ndarray, k: int = 10) -> None:
        self.queries = np.ascontiguousarray(queries, dtype=np.float32)
        self.query_ids = np.asarray(query_ids, dtype=np.int64)
        self.k = k + 1  # the query itself is among the vectors
        self.scores = np.full((len(self.queries), 0), -np.inf, dtype=np.float32)
        self.ids = np.zeros((len(self.queries), 0), dtype=np.int64)

    def push(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if not len(ids) or not len(self.queries):
            return
        scores = self.queries @ np.ascontiguousarray(vectors, dtype=np.float32).T
        ids = np.broadcast_to(np.asarray(ids, dtype=np.int64), scores.shape)
        scores = np.concatenate([self.scores, scores], axis=1)
        ids = np.concatenate([self.ids, ids], axis=1)
        keep = min(self.k, scores.shape[1])
        best = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
        self.scores = np.take_along_axis(scores, best, axis=1)
        self.ids = np.take_along_axis(ids, best, axis=1)

    def truth(self) -> list[set[int]]:
        order = np.argsort(-self.scores, axis=1)
        rows = np.take_along_axis(self.ids, order, axis=1)
        return [set(_others(r, me, self.k - 1)) for r, me in zip(rows, self.query_ids, strict=True)]


def _set_effort(index: faiss.Index, kind: str, value: int) -> None:
    if kind == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = int(value)
    else:
        index.nprobe = int(value)


def _others(found: np.ndarray, me: int, k: int) -> list[int]:
    """The first k ids of a result row other than the query's own."""
    return [int(i) for i in found if i != me][:k]


def tune_ann(
    index: faiss.Index,
    kind: str,
    vectors: np.ndarray,
    ids: np.ndarray,
    target: float = TARGET_RECALL,
    n_queries: int = TUNE_QUERIES,
    truth: list[set[int]] | None = None,
) -> dict:
    """Set the smallest search effort reaching ``target`` recall@10 on this data.

    Queries are a fixed sample of the indexed vectors themselves (as in "tracks
    like this one"); the truth is exact search over all of them. Returns the
    chosen parameter and the recall measured with it. With ``truth`` (each query's
    true 10 neighbours, found by :class:`ExactTopK` while the vectors streamed past)
    ``vectors`` and ``ids`` are the queries themselves, not everything indexed.
    """
    k = 10
    if truth is None:
        rng = np.random.default_rng(1)
        pick = np.sort(rng.choice(len(vectors), min(n_queries, len(vectors)), replace=False))
        queries = np.ascontiguousarray(vectors[pick])
        own = ids[pick]
        _, rows = faiss.knn(queries, vectors, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
        truth = [set(_others(ids[r[r >= 0]], me, k)) for r, me in zip(rows, own, strict=True)]
    else:
        queries = np.ascontiguousarray(vectors, dtype=np.float32)
        own = np.asarray(ids)
    choices = HNSW_EF_CHOICES if kind == "hnsw" else IVF_NPROBE_CHOICES
    name = "efSearch" if kind == "hnsw" else "nprobe"
    recall = 0.0
    for value in choices:
        _set_effort(index, kind, value)
        _, found = index.search(queries, k + 1)
        hits = sum(
            len(want & set(_others(got[got >= 0], me, k)))
            for want, got, me in zip(truth, found, own, strict=True)
        )
        recall = hits / max(1, sum(len(t) for t in truth))
        if recall >= target:
            break
    return {name: int(value), "tuned_recall_at_10": round(recall, 4), "target": target}
