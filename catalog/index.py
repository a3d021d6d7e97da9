"""The FAISS index of track embeddings: a fast, disposable copy of the database.

Vectors are L2-normalised, so inner product is cosine similarity. The index file
carries a small JSON header (catalog version, model id, dimension) in front of the
serialised FAISS index; the catalog compares that version with its own to decide
whether the file on disk can be trusted or must be rebuilt from the database.
Saving writes a temporary file, fsyncs it and renames it over the old one, so a
crash at any moment leaves either the old index or the new one, never half of one.

Search is exact while that stays fast; a large index gets an approximate one
beside it (:mod:`catalog.ann`: which kind, how built and tuned). The approximate
index is derived data: it is never written to disk (the file format is
unchanged), it is built on demand, possibly in a background thread, and until it
is ready, or after a change it cannot follow (a removal or a replaced vector),
searches are answered exactly.

IVF is the exception to "beside the exact one" where the owner allows it
(``VectorIndex.compact_ivf``, which the catalog sets): an ``IndexIVFFlat`` keeps
every vector itself and, with a direct map, can reconstruct, replace and remove
any of them, and answer exactly by probing every list. Once it is built the exact
index is therefore let go and the IVF is the only copy (about 2 GB less at 1M
tracks, docs/scaling.md); it is what :meth:`VectorIndex.save` writes then, so a
restart does not build it again. A PostgreSQL catalog rebuilding its index at IVF
sizes skips the exact index altogether (:meth:`VectorIndex.of_ivf`,
``catalog.index_builds``). The file is written and read through FAISS's callback
writer and reader, a chunk at a time, so saving or loading never holds a second
whole copy of the index as bytes.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from catalog import ann as approximate
from catalog.read_write_lock import ReadWriteLock
from embeddings.atomic import atomic_write

MAGIC = b"SONICIDX"
_HEADER_LEN = struct.Struct("<I")


@dataclass
class IndexHeader:
    version: int
    model_id: str | None
    dim: int


# One query is a few ms of work: OpenMP threads only add start-up and contention.
SEARCH_THREADS = 1
_IO_CHUNK = 1 << 20  # bytes per write or read when the index file is streamed


def read_header(path: Path) -> IndexHeader:
    """The header of an index file, without reading the vectors."""
    with open(path, "rb") as fh:
        return _read_header(fh, path)


def _read_header(fh, path: Path) -> IndexHeader:
    """The header from an open index file, which is left just past it (at the index)."""
    head = fh.read(len(MAGIC) + _HEADER_LEN.size)
    if not head.startswith(MAGIC) or len(head) < len(MAGIC) + _HEADER_LEN.size:
        raise ValueError(f"{path} is not a Sonic Catalog index file")
    (length,) = _HEADER_LEN.unpack_from(head, len(MAGIC))
    try:
        return IndexHeader(**json.loads(fh.read(length)))
    except Exception as exc:
        raise ValueError(f"{path} has a damaged header: {exc}") from exc


def _search_single_threaded(index: faiss.Index, queries: np.ndarray, k: int, params=None):
    """``index.search`` with ``SEARCH_THREADS`` OpenMP threads in this thread only."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(SEARCH_THREADS)
    try:
        return index.search(queries, k, params=params)
    finally:
        faiss.omp_set_num_threads(before)


def _ivf_ids(ivf: faiss.Index) -> np.ndarray:
    """Every id an IVF index holds, sorted (read from its inverted lists)."""
    invlists = ivf.invlists
    parts = [
        np.array(faiss.rev_swig_ptr(invlists.get_ids(i), size), dtype=np.int64)
        for i in range(ivf.nlist)
        if (size := invlists.list_size(i))
    ]
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def _return_freed_memory() -> None:
    """Hand freed heap back to the OS (glibc keeps large freed blocks otherwise)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


class VectorIndex:
    """Inner-product search keyed by track id (``IndexIDMap2`` over ``IndexFlatIP``).

    The exact index is the one saved and loaded; an approximate one (see
    :func:`catalog.ann.choose_kind`) is derived from it in memory when the index is large.
    """

    def __init__(self, dim: int, model_id: str | None = None, version: int = 0) -> None:
        self.dim = dim
        self.model_id = model_id
        self.version = version
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        # Keep IVF alone once built, without the exact index (see the module's doc).
        # Off by default so that a bare VectorIndex keeps the exact index it was given.
        self.compact_ivf = False
        self._compact = False  # self.index is that IVF (and self._ann the same object)
        self._ann: faiss.Index | None = None
        self._ann_kind: str | None = None
        self._ann_info: dict = {}
        self._ann_lock = threading.Lock()
        self._generation = 0  # bumped by changes the approximate index cannot follow
        self._building: threading.Thread | None = None
        self._rw = ReadWriteLock()  # searches and reads vs. changes (see ReadWriteLock)
        # Where a large approximate index may be built from instead of a copy of the
        # vectors in memory (the PostgreSQL catalog sets it: see Catalog.index).
        self.ann_builder: Callable[[VectorIndex, str], tuple[faiss.Index, dict]] | None = None

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        with self._rw.read():
            return self._ids()

    def _ids(self) -> np.ndarray:
        if len(self) == 0:
            return np.zeros(0, dtype=np.int64)
        if self._compact:
            return _ivf_ids(self.index)
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors, replacing any already stored under the same ids."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        with self._rw.write():
            self._remove(ids)
            self.index.add_with_ids(vectors, ids)
            with self._ann_lock:
                # new ids only (replaced ones dropped it in remove); compact: it is self.index
                if self._ann is not None and not self._compact:
                    self._ann.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> None:
        with self._rw.write():
            self._remove(ids)

    def _remove(self, ids: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) and len(self):
            # IVF's direct map removes by an explicit id array only (not the id batch
            # faiss's wrapper makes of an array)
            which = faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids)) if self._compact else ids
            if self.index.remove_ids(which):
                if self._compact:  # the IVF follows; a build under way must not be kept
                    with self._ann_lock:
                        self._generation += 1
                else:
                    self._drop_ann()

    # -- the approximate index --------------------------------------------------------

    @property
    def kind(self) -> str:
        """The structure this index's size calls for (see :func:`catalog.ann.choose_kind`)."""
        return approximate.choose_kind(len(self))

    def ann_status(self) -> dict:
        """Which structure answers searches now, and which one the size calls for."""
        with self._ann_lock:
            if self._compact:
                ready, kind = True, "ivf"
            else:
                ready = self._ann is not None and self._ann.ntotal == len(self)
                kind = self._ann_kind
            return {
                "vectors": len(self),
                "wanted": self.kind,
                "searching_with": kind if ready else "flat",
                "params": dict(self._ann_info) if ready else {},
                "building": self._building is not None and self._building.is_alive(),
                "exact_index_kept": not self._compact,
            }

    def _drop_ann(self) -> None:
        with self._ann_lock:
            self._ann = None
            self._ann_kind = None
            self._generation += 1

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All (ids, vectors) in storage order (a copy)."""
        n = len(self)
        if n == 0:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.dim), dtype=np.float32)
        with self._rw.read():
            return self._copy_vectors()

    def _copy_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        n = len(self)
        if n == 0:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.dim), dtype=np.float32)
        if self._compact:
            ids = self._ids()
            return ids, self.index.reconstruct_batch(ids)
        flat = faiss.downcast_index(self.index.index)
        data = faiss.rev_swig_ptr(flat.get_xb(), n * self.dim)
        return self._ids(), np.array(data, dtype=np.float32).reshape(n, self.dim)

    def build_ann(self, kind: str | None = None) -> str:
        """Build the approximate index now (in this thread); returns the kind built.

        ``kind`` defaults to what the size calls for; ``flat`` drops any approximate
        index so that every search is exact.
        """
        kind = kind or self.kind
        if self._compact and kind != "ivf":
            self._expand()  # the library shrank below IVF sizes: the exact index again
        if kind == "flat":
            self._drop_ann()
            return kind
        if kind == "ivf" and self.ann_builder is not None:
            with self._ann_lock:
                generation = self._generation
            ann, info = self.ann_builder(self, kind)
        else:
            with self._rw.read():  # locks in the order changes take them: rw, then ann
                with self._ann_lock:
                    generation = self._generation
                ids, vectors = self._copy_vectors()
            ann = approximate.build_ann(vectors, ids, kind)
            info = approximate.tune_ann(ann, kind, vectors, ids)
        with self._ann_lock:
            if generation == self._generation and ann.ntotal == len(self):
                self._ann, self._ann_kind, self._ann_info = ann, kind, info
            else:
                return kind
        if kind == "ivf" and (self.compact_ivf or self._compact):
            self._keep_ivf_alone(ann)
        return kind

    def _keep_ivf_alone(self, ann: faiss.Index) -> None:
        """Make the IVF just built the only copy of the vectors (see the module's doc).

        The direct map (id to list and offset, about 50 bytes a vector) is what lets
        the IVF reconstruct, replace and remove vectors by id as the exact index did.
        Done under the write lock, and only if no change came in since the build.
        """
        with self._rw.write():
            with self._ann_lock:
                if self._ann is not ann or ann.ntotal != len(self):
                    return
                ann.set_direct_map_type(faiss.DirectMap.Hashtable)
                self.index = ann  # the exact index's storage is freed here
                self._compact = True
        _return_freed_memory()

    def _expand(self) -> None:
        """The exact index again, from the IVF's vectors (a library that shrank)."""
        with self._rw.write():
            if not self._compact:
                return
            ids = self._ids()
            exact = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            if len(ids):
                exact.add_with_ids(self.index.reconstruct_batch(ids), ids)
            self.index = exact
            self._compact = False
            self._drop_ann()

    def ensure_ann(self, background: bool = True) -> None:
        """Build the approximate index if the size calls for one and none is ready."""
        status = self.ann_status()
        if status["wanted"] == "flat":
            if self._compact:  # shrunk to exact-search size: the exact index again
                self.build_ann("flat")
            return
        if status["searching_with"] == status["wanted"] and not self._ivf_outgrown():
            return
        if not background:
            self.build_ann()
            return
        with self._ann_lock:
            if self._building is not None and self._building.is_alive():
                return
            self._building = threading.Thread(
                target=self.build_ann, name="sonic-ann-build", daemon=True
            )
            self._building.start()

    def _ivf_outgrown(self) -> bool:
        """A kept IVF (which follows every change) built for a quarter of today's size.

        Lists are about 2 sqrt(n): once the library has grown fourfold since the
        build, twice the lists are due and the old ones are long and slow to scan.
        """
        return self._compact and approximate.ivf_lists(len(self)) > int(self.index.nlist)

    def vector(self, track_id: int) -> np.ndarray | None:
        try:
            with self._rw.read():
                return self.index.reconstruct(int(track_id))
        except RuntimeError:  # faiss raises when the id is absent
            return None

    def vectors_of(self, track_ids: list[int]) -> np.ndarray:
        """The stored vectors of ids known to be in the index, in one call (a sonic
        path looks up dozens per step; one ``reconstruct`` each cost ~45 us of wrapper)."""
        ids = np.ascontiguousarray(track_ids, dtype=np.int64)
        return self.index.reconstruct_batch(ids)

    def search(self, query: np.ndarray, k: int, exact: bool = False) -> list[tuple[int, float]]:
        """The k best (id, cosine) pairs for one query vector, best first.

        Uses the approximate index when one is ready and complete, unless ``exact``.
        """
        if len(self) == 0 or k <= 0:
            return []
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        k = min(k, len(self))
        ann = None
        if not exact:
            with self._ann_lock:
                if self._ann is not None and self._ann.ntotal == len(self) and not self._compact:
                    ann = self._ann
        with self._rw.read():
            if self._compact and exact:  # every list probed: IVF-Flat's answer is exact
                params = faiss.SearchParametersIVF(nprobe=int(self.index.nlist))
                scores, ids = _search_single_threaded(self.index, q, k, params)
            else:
                scores, ids = _search_single_threaded(ann if ann is not None else self.index, q, k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def save(self, path: Path) -> None:
        """Write atomically: temporary file, fsync, rename, fsync the directory."""
        header = json.dumps(
            {"version": self.version, "model_id": self.model_id, "dim": self.dim}
        ).encode()

        def write(fh) -> None:
            fh.write(MAGIC)
            fh.write(_HEADER_LEN.pack(len(header)))
            fh.write(header)
            # streamed to the file a chunk at a time: serialize_index and tobytes()
            # would hold two whole copies of the index (2.6 GB each at 1M) meanwhile
            with self._rw.read():
                faiss.write_index(self.index, faiss.PyCallbackIOWriter(fh.write, _IO_CHUNK))

        atomic_write(Path(path), write, durable=True)

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        """Read an index saved by :meth:`save`; raises ``ValueError`` if unreadable."""
        with open(path, "rb") as fh:
            header = _read_header(fh, path)
            try:
                # read straight into the index, a chunk at a time: the file's bytes in
                # memory and a copy to deserialise would be two more whole copies
                index = faiss.read_index(faiss.PyCallbackIOReader(fh.read, _IO_CHUNK))
            except Exception as exc:  # a truncated or corrupt file: the caller rebuilds
                raise ValueError(f"{path} is damaged: {exc}") from exc
        if isinstance(index, faiss.IndexIVF):  # saved by a catalog that kept IVF alone
            info = {"nprobe": int(index.nprobe), "loaded": True}
            return cls.of_ivf(index, header.model_id, header.version, info)
        out = cls(header.dim, header.model_id, header.version)
        out.index = index
        return out

    @classmethod
    def of_ivf(
        cls, ivf: faiss.IndexIVF, model_id: str | None, version: int, info: dict
    ) -> VectorIndex:
        """An index whose only copy of the vectors is this IVF (see the module's doc).

        For an IVF loaded from its file or built straight from the database: no
        exact index is made first. The direct map lets it reconstruct, replace and
        remove vectors by id.
        """
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        out = cls(int(ivf.d), model_id, version)
        out.compact_ivf = True
        out._ann, out._ann_kind, out._ann_info, out._compact = ivf, "ivf", dict(info), True
        out.index = ivf  # the empty exact index made by __init__ is dropped
        return out
