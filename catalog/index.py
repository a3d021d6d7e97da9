"""The FAISS index of track embeddings: a fast, disposable copy of SQLite.

Vectors are L2-normalised, so inner product is cosine similarity. The index file
carries a small JSON header (catalog version, model id, dimension) in front of the
serialised FAISS index; the catalog compares that version with its own to decide
whether the file on disk can be trusted or must be rebuilt from SQLite. Saving
writes a temporary file, fsyncs it and renames it over the old one, so a crash at
any moment leaves either the old index or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

MAGIC = b"SONICIDX"
_HEADER_LEN = struct.Struct("<I")


@dataclass
class IndexHeader:
    version: int
    model_id: str | None
    dim: int


class VectorIndex:
    """Exact inner-product search keyed by track id (``IndexIDMap2`` over ``IndexFlatIP``)."""

    def __init__(self, dim: int, model_id: str | None = None, version: int = 0) -> None:
        self.dim = dim
        self.model_id = model_id
        self.version = version
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        if len(self) == 0:
            return np.zeros(0, dtype=np.int64)
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors, replacing any already stored under the same ids."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        self.remove(ids)
        self.index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) and len(self):
            self.index.remove_ids(ids)

    def vector(self, track_id: int) -> np.ndarray | None:
        try:
            return self.index.reconstruct(int(track_id))
        except RuntimeError:  # faiss raises when the id is absent
            return None

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The k best (id, cosine) pairs for one query vector, best first."""
        if len(self) == 0 or k <= 0:
            return []
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        scores, ids = self.index.search(q, min(k, len(self)))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def save(self, path: Path) -> None:
        """Write atomically: temporary file, fsync, rename, fsync the directory."""
        header = json.dumps(
            {"version": self.version, "model_id": self.model_id, "dim": self.dim}
        ).encode()
        body = faiss.serialize_index(self.index)
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(MAGIC)
            fh.write(_HEADER_LEN.pack(len(header)))
            fh.write(header)
            fh.write(body.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        """Read an index saved by :meth:`save`; raises ``ValueError`` if unreadable."""
        data = Path(path).read_bytes()
        if not data.startswith(MAGIC):
            raise ValueError(f"{path} is not a Sonic Catalog index file")
        offset = len(MAGIC)
        (length,) = _HEADER_LEN.unpack_from(data, offset)
        offset += _HEADER_LEN.size
        try:
            header = IndexHeader(**json.loads(data[offset : offset + length]))
            body = np.frombuffer(data, dtype=np.uint8, offset=offset + length)
            index = faiss.deserialize_index(body.copy())
        except Exception as exc:  # a truncated or corrupt file: the caller rebuilds
            raise ValueError(f"{path} is damaged: {exc}") from exc
        out = cls(header.dim, header.model_id, header.version)
        out.index = index
        return out
