"""From per-segment outputs to one answer per track: numpy only.

Kept apart from :mod:`embeddings.inference` (which needs torch) so the command line
can check ``--aggregation`` and the pipeline can plan a run without importing torch.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Aggregation = Literal["mean", "median", "max", "vote"]
AGGREGATIONS: tuple[str, ...] = ("mean", "median", "max", "vote")


def aggregate(probabilities: np.ndarray, method: str = "mean") -> np.ndarray:
    """One probability vector from per-segment probabilities (rows sum to 1)."""
    if probabilities.ndim != 2 or len(probabilities) == 0:
        raise ValueError("need a non-empty (segments, genres) array")
    if method == "mean":
        out = probabilities.mean(axis=0)
    elif method == "median":
        out = np.median(probabilities, axis=0)
    elif method == "max":
        out = probabilities.max(axis=0)
    elif method == "vote":
        votes = np.bincount(probabilities.argmax(axis=1), minlength=probabilities.shape[1])
        out = votes.astype(np.float64)
    else:
        raise ValueError(f"unknown aggregation {method!r}; choose one of {AGGREGATIONS}")
    total = float(out.sum())
    return (out / total).astype(np.float32) if total > 0 else out.astype(np.float32)


def l2_normalise(vector: np.ndarray) -> np.ndarray:
    """Unit length, so inner product is cosine similarity; zero stays zero."""
    norm = float(np.linalg.norm(vector))
    return (vector / norm).astype(np.float32) if norm > 0 else vector.astype(np.float32)


def top_k(probabilities: np.ndarray, genres: list[str], k: int = 3) -> list[tuple[str, float]]:
    order = np.argsort(probabilities)[::-1][:k]
    return [(genres[i], float(probabilities[i])) for i in order]
