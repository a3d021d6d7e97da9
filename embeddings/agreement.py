"""How closely a fast inference path agrees with the fp32 reference (issue 22's rules).

A track's answer is the mean of its segments' probabilities and the L2-normalised
mean of their embeddings, as ingest stores them. Against fp32, a path must give:

- the same top genre for at least 99 % of tracks,
- a track-embedding cosine of at least 0.99 (every track),
- top-5 sound-alike lists over the same tracks unchanged, in order, for at least
  95 % of the tracks.

The benchmark and the tests measure with :func:`agreement`; the Predictor checks a
path it picked by itself on :func:`probe_features` before using it.
"""

from __future__ import annotations

import numpy as np

from embeddings.frontend import FrontendConfig, batch_features

MIN_TOP_GENRE = 0.99
MIN_COSINE = 0.99
MIN_NEIGHBOURS = 0.95
NEIGHBOURS = 5


def per_track(
    probabilities: np.ndarray, embeddings: np.ndarray, owners: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Segment outputs to track outputs: mean probabilities, normalised mean embedding."""
    tracks = np.unique(owners)
    probs = np.stack([probabilities[owners == t].mean(axis=0) for t in tracks])
    embs = np.stack([embeddings[owners == t].mean(axis=0, dtype=np.float64) for t in tracks])
    return probs, embs / np.maximum(np.linalg.norm(embs, axis=1, keepdims=True), 1e-12)


def neighbour_lists(unit: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """Each track's k most similar other tracks, best first (ties broken by index)."""
    scores = unit @ unit.T
    np.fill_diagonal(scores, -np.inf)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def agreement(
    reference: tuple[np.ndarray, np.ndarray],
    candidate: tuple[np.ndarray, np.ndarray],
    owners: np.ndarray,
) -> dict:
    """Issue 22's figures for ``candidate`` against ``reference`` (probs, embeddings)."""
    ref_p, ref_e = per_track(*reference, owners)
    new_p, new_e = per_track(*candidate, owners)
    cosine = (ref_e * new_e).sum(axis=1)
    k = min(NEIGHBOURS, len(ref_e) - 1)
    ref_lists, new_lists = neighbour_lists(ref_e, k), neighbour_lists(new_e, k)
    figures = {
        "tracks": int(len(ref_p)),
        "top_genre": float((ref_p.argmax(1) == new_p.argmax(1)).mean()),
        "cosine_min": float(cosine.min()),
        "cosine_p10": float(np.percentile(cosine, 10)),
        "neighbours_in_order": float((ref_lists == new_lists).all(axis=1).mean()),
        # not a rule; says whether a reordered list still holds the same tracks
        "neighbours_same_set": float(
            np.mean([set(a) == set(b) for a, b in zip(ref_lists, new_lists, strict=True)])
        ),
    }
    figures["passes"] = bool(
        figures["top_genre"] >= MIN_TOP_GENRE
        and figures["cosine_min"] >= MIN_COSINE
        and figures["neighbours_in_order"] >= MIN_NEIGHBOURS
    )
    return figures


def probe_features(config: FrontendConfig, count: int = 4, seed: int = 0) -> np.ndarray:
    """``count`` segments of music-like audio (chords, bass, kick, hats): model inputs.

    Synthesised, so checks need no audio files; varied enough (tempo, key, loudness)
    that a path that rounds badly shows it.
    """
    rng = np.random.default_rng(seed)
    n, sr = config.segment_samples, config.sample_rate
    t = np.arange(n) / sr
    segments = np.empty((count, n), dtype=np.float32)
    for i in range(count):
        root = rng.uniform(80, 330)
        music = sum(
            rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * root * r * t + rng.uniform(0, 6.3))
            for r in (0.5, 1, 1.25, 1.5, 2)[: rng.integers(2, 6)]
        )
        beat = int(sr * 60 / rng.uniform(70, 170))
        decay = np.exp(-np.arange(beat) / (0.05 * sr))
        pulse = np.zeros(n)
        for start in range(0, n - beat, beat):
            pulse[start : start + beat] += decay * np.sin(2 * np.pi * 55 * np.arange(beat) / sr)
        hats = rng.standard_normal(n) * np.tile(decay**8, n // beat + 1)[:n] * 0.1
        audio = music + rng.uniform(0.2, 0.8) * pulse + hats + 0.01 * rng.standard_normal(n)
        segments[i] = 0.8 * audio / max(1e-6, np.abs(audio).max())
    return batch_features(segments, config)
