"""A fixed random projection that keeps per-segment embeddings small.

"Why are these similar?" compares the segments of two tracks, so every segment's
embedding is stored. At 512 floats that is 60 kB per three-minute track, too much
for libraries of 100k+ tracks; an orthonormal random projection to 128 dimensions
(stored as fp16, 256 bytes a segment) keeps cosine similarities close
(Johnson-Lindenstrauss) at a quarter of the size. The matrix depends only on the
dimensions and a fixed seed, so every process computes the same one.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SEGMENT_DIM = 128
SEED = 20261121


@lru_cache(maxsize=4)
def projection_matrix(in_dim: int, out_dim: int = SEGMENT_DIM) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    gaussian = rng.standard_normal((in_dim, max(in_dim, out_dim)))
    q, _ = np.linalg.qr(gaussian)
    return q[:, :out_dim].astype(np.float32)


def project_segments(embeddings: np.ndarray) -> np.ndarray:
    """(n, dim) embeddings -> (n, 128) unit-length float16 vectors."""
    if embeddings.shape[1] <= SEGMENT_DIM:
        projected = embeddings.astype(np.float32)
    else:
        projected = embeddings.astype(np.float32) @ projection_matrix(embeddings.shape[1])
    norms = np.linalg.norm(projected, axis=1, keepdims=True)
    return (projected / np.maximum(norms, 1e-12)).astype(np.float16)
