"""The approximate index of a large shared catalog, built from the database in batches.

At 400k tracks and more the catalog searches with IVF (``catalog.ann.choose_kind``).
Built the usual way, from ``VectorIndex.vectors()``, that means a copy of every
vector (2 GB at 1M x 512 float32) next to the exact index and the IVF's own lists
while it is built. On PostgreSQL the vectors are in the database anyway, so the IVF
is instead trained on a sample fetched by id and filled by streaming the embedding
column through a server-side cursor (``yield_per``), one batch at a time; the
recall tuning's exact truth is gathered in the same pass. Besides the finished
structures only the training sample (40 vectors per list) and one batch are held.

When the catalog rebuilds its index at IVF sizes (:func:`ivf_index_from_database`)
there is no exact index at all: the ids are read first (8 bytes each), then the
IVF is built as above and becomes the catalog's only index. :func:`build_ann_from_database`
is the other way in: an exact (or older IVF) index in memory that has grown to IVF
sizes, or a kept IVF rebuilt after fourfold growth, where that index is held
beside the new IVF until it is complete. See docs/scaling.md for the figures at 1M.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np
from sqlalchemy import select

from catalog.ann import (
    IVF_TRAIN_PER_LIST,
    TUNE_QUERIES,
    ExactTopK,
    build_ivf_batched,
    ivf_lists,
    tune_ann,
)
from catalog.index import VectorIndex
from catalog.schema import Track

if TYPE_CHECKING:
    from catalog.store import Catalog

BATCH_ROWS = 5_000  # 10 MB of float32 vectors (plus as much again as bytes) per batch
ID_CHUNK = 5_000  # ids per "WHERE id IN (...)" when fetching the training sample
ID_BATCH_ROWS = 100_000  # ids per batch when only the ids are read


def stream_indexable(catalog: Catalog, dim: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, vectors) of every indexable track, ``BATCH_ROWS`` at a time, streamed."""
    query = catalog._indexable().execution_options(yield_per=BATCH_ROWS)
    with catalog.sessions() as s:
        for part in s.execute(query).partitions():
            ids = np.fromiter((row[0] for row in part), dtype=np.int64, count=len(part))
            vectors = np.frombuffer(b"".join(row[1] for row in part), dtype=np.float32)
            if vectors.size != len(part) * dim:  # a stray blob of another size: skip it
                keep = [row for row in part if len(row[1]) == 4 * dim]
                ids = np.array([row[0] for row in keep], dtype=np.int64)
                vectors = np.frombuffer(b"".join(row[1] for row in keep), dtype=np.float32)
            yield ids, vectors.reshape(len(ids), dim)


def vectors_by_id(
    catalog: Catalog, track_ids: np.ndarray, dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """The stored embeddings of these tracks (those still there), in id order.

    Written into one array as the rows arrive: a list of every blob joined at the
    end would hold the sample twice (168 MB each at 1M).
    """
    found_ids = np.empty(len(track_ids), dtype=np.int64)
    vectors = np.empty((len(track_ids), dim), dtype=np.float32)
    found = 0
    with catalog.sessions() as s:
        for start in range(0, len(track_ids), ID_CHUNK):
            chunk = [int(i) for i in track_ids[start : start + ID_CHUNK]]
            query = select(Track.id, Track.embedding).where(Track.id.in_(chunk))
            for track_id, blob in s.execute(query.order_by(Track.id)):
                if blob is not None and len(blob) == 4 * dim:
                    found_ids[found] = track_id
                    vectors[found] = np.frombuffer(blob, dtype=np.float32)
                    found += 1
    if found < len(track_ids):  # some went meanwhile
        return found_ids[:found].copy(), vectors[:found].copy()
    return found_ids, vectors


def indexable_ids(catalog: Catalog) -> np.ndarray:
    """The ids of every indexable track, streamed (8 bytes each: 8 MB at 1M)."""
    query = catalog._indexable().with_only_columns(Track.id)
    parts: list[np.ndarray] = []
    with catalog.sessions() as s:
        for part in s.execute(query.execution_options(yield_per=ID_BATCH_ROWS)).partitions():
            parts.append(np.fromiter((row[0] for row in part), dtype=np.int64, count=len(part)))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def build_ann_from_database(
    catalog: Catalog, index: VectorIndex, kind: str
) -> tuple[faiss.Index, dict]:
    """An IVF index over the catalog's indexable tracks, read from the database.

    ``index`` (the one in memory) only provides the ids to sample from and the
    count; its vectors are never copied. Returns the index and its tuning.
    """
    if kind != "ivf":
        raise ValueError(f"the batched build makes IVF indexes, not {kind!r}")
    return _ivf_from_database(catalog, index.ids(), index.dim)


def ivf_index_from_database(
    catalog: Catalog, dim: int, model_id: str | None, version: int, path: Path
) -> VectorIndex:
    """The catalog's index built as IVF straight from the database, saved to ``path``.

    What a PostgreSQL catalog at IVF sizes rebuilds (``IndexKeeper.rebuild_index``):
    the ids are read first (to size the lists and draw the training sample), then
    the vectors stream into the IVF a batch at a time. The exact index that used
    to be filled first, only to be let go once the IVF was complete, is never made,
    so the peak is the IVF alone plus the sample and one batch.

    The IVF is then written, let go, and read back from its file: a list filled by
    appends has grown by doubling its capacity, so the IVF just built holds about
    1.45x its vectors (measured at 100k), while one read from a file has lists of
    exactly their size. The built one is released before the file is read, so the
    peak stays the build's and what is kept is about a third smaller.
    """
    ann, info = _ivf_from_database(catalog, indexable_ids(catalog), dim)
    built = VectorIndex.of_ivf(ann, model_id, version, info)
    del ann
    built.save(path)
    del built  # the only reference: its lists are freed here
    _return_freed_memory()
    loaded = VectorIndex.load(path)
    loaded._ann_info = info
    return loaded


def _ivf_from_database(catalog: Catalog, all_ids: np.ndarray, dim: int) -> tuple[faiss.Index, dict]:
    n = len(all_ids)
    rng = np.random.default_rng(0)
    n_train = min(n, ivf_lists(n) * IVF_TRAIN_PER_LIST)
    sample_ids, sample = vectors_by_id(
        catalog, np.sort(rng.choice(all_ids, n_train, replace=False)), dim
    )
    pick = np.sort(rng.choice(len(sample_ids), min(TUNE_QUERIES, len(sample_ids)), replace=False))
    truth = ExactTopK(sample[pick], sample_ids[pick])

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for ids, vectors in stream_indexable(catalog, dim):
            truth.push(ids, vectors)
            yield ids, vectors

    ann = build_ivf_batched(sample, batches(), n)
    del sample, all_ids
    info = tune_ann(ann, "ivf", truth.queries, truth.query_ids, truth=truth.truth())
    info["built_from"] = "database"
    _return_freed_memory()
    return ann, info


def _return_freed_memory() -> None:
    """Hand the batches' freed heap back to the OS (glibc keeps it otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
