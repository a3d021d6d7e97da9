"""The statistics of a same-album evaluation: precision@k, its chance and ceiling, intervals.

Pure numpy over embeddings and album labels, so any evaluation (``sonic
evaluate-similarity``, the benchmarks, the teacher tools and the research scripts)
scores alike. A few dozen tracks make a noisy test: :func:`bootstrap_interval`
gives a 95 % interval over the query tracks, and :func:`paired_difference` compares
two methods track by track, which resolves smaller differences.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def precision_at_k(vectors: np.ndarray, labels: Iterable, k: int = 5) -> np.ndarray:
    """Per track, the fraction of its k nearest other tracks (cosine) with the same label.

    Ties are broken by track order, so the result is deterministic.
    """
    labels = np.asarray(list(labels))
    n = len(labels)
    if n < 2:
        raise ValueError("need at least two tracks")
    k = min(k, n - 1)
    x = np.asarray(vectors, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    nearest = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return (labels[nearest] == labels[:, None]).mean(axis=1)


def chance_and_ceiling(labels: Iterable, k: int = 5) -> tuple[float, float]:
    """Expected precision@k of random neighbours, and the best achievable on these albums."""
    labels = np.asarray(list(labels))
    n = len(labels)
    k = min(k, n - 1)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    others = counts[inverse] - 1
    return float(np.mean(others / (n - 1))), float(np.mean(np.minimum(others, k) / k))


def bootstrap_interval(
    per_track: np.ndarray, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile interval of the mean, resampling the query tracks with replacement.

    Approximate: the queries share neighbours, so they are not independent; the
    interval says how much the mean would move with other tracks of the same kind.
    """
    values = np.asarray(per_track, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def paired_difference(
    per_track: np.ndarray, reference: np.ndarray, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``per_track - reference`` over the same query tracks, and its 95 % interval.

    Pairing removes what the two methods share (an easy track is easy for both),
    so it resolves smaller differences than two separate intervals can.
    """
    difference = np.asarray(per_track, np.float64) - np.asarray(reference, np.float64)
    low, high = bootstrap_interval(difference, resamples, seed)
    return float(difference.mean()), low, high


def zscore(x: np.ndarray) -> np.ndarray:
    """Standardise columns over the rows given; constant columns become zero."""
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 1e-12, std, 1.0)


def whitening(reference: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and projection that z-score, then PCA-whiten, as fitted on ``reference`` rows.

    ``(x - mean) @ projection`` is the whitened ``x``; ``eps`` shrinks each
    eigenvalue by that fraction of the largest. The catalog does not use it: the
    sixth round of ``docs/research/model-rounds.md`` measured it, with
    ``docs/research/scripts/whitening_similarity.py``, and kept the raw cosine.
    """
    mean = reference.mean(axis=0)
    std = reference.std(axis=0)
    scale = 1.0 / np.where(std > 1e-12, std, 1.0)
    values, vectors = np.linalg.eigh(np.cov(((reference - mean) * scale).T))
    values = np.clip(values, 0.0, None)
    return mean, scale[:, None] * vectors / np.sqrt(values + eps * values.max())
