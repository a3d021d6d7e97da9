"""Score variants against a base on the same tracks: printed rows and their JSON.

Each row is a variant's mean precision, its 95 % bootstrap interval over the
query tracks, and its paired difference against the base with that interval
(``embeddings.training.similarity_metrics``), so that small differences between variants
scored on the same tracks are resolved.
"""

from __future__ import annotations

import numpy as np

from embeddings.training.similarity_metrics import bootstrap_interval, paired_difference


def paired_rows(
    scores: dict[str, np.ndarray], base: np.ndarray, key: str, width: int
) -> dict[str, dict]:
    """Print one row per variant, in the order given, and return them by name.

    ``key`` names the paired difference in the JSON (``minus_<base>``).
    """
    rows = {}
    for label, per_track in scores.items():
        low, high = bootstrap_interval(per_track)
        diff, dlow, dhigh = paired_difference(per_track, base)
        rows[label] = {
            "precision": float(per_track.mean()),
            "interval_95": [low, high],
            key: [diff, dlow, dhigh],
        }
        print(
            f"  {label:<{width}} {per_track.mean():.3f}  ({low:.3f}-{high:.3f})"
            f"  {diff:+.3f} ({dlow:+.3f} to {dhigh:+.3f})"
        )
    return rows
