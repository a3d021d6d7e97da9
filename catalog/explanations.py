"""Explanations from what the catalog holds: the stored band focus, shared genres.

The bands themselves (edges and the words for them) are :mod:`embeddings.bands`,
the one band table.

Nothing here runs a model. :mod:`catalog.why_similar` builds the "why similar"
answer from these pieces.
"""

from __future__ import annotations

from catalog.schema import Track


def band_focus_of(track: Track) -> dict[str, float] | None:
    if track.focus_low is None:
        return None
    return {"low": track.focus_low, "mid": track.focus_mid, "high": track.focus_high}


def shared_genres(pa: dict[str, float], pb: dict[str, float]) -> dict[str, float]:
    """Per genre, the probability two tracks' predictions have in common (the smaller one).

    The sum is the overlap of the two distributions (1 minus their total variation
    distance): 1 when the model heard the same genre mix in both, 0 when nothing in
    common.
    """
    return {g: min(pa.get(g, 0.0), pb.get(g, 0.0)) for g in sorted(set(pa) | set(pb))}
