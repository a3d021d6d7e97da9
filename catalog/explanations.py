"""Explanations from what the catalog holds: band focus in words, shared genres.

Nothing here runs a model. :mod:`catalog.why_similar` builds the "why similar"
answer from these pieces.
"""

from __future__ import annotations

from catalog.schema import Track

BANDS = ("low", "mid", "high")
BAND_WORDS = {
    "low": "the bass and kick (below 250 Hz)",
    "mid": "the mid range where vocals and most instruments sit (250 Hz to 4 kHz)",
    "high": "the highs, cymbals and air (above 4 kHz)",
}


def band_focus_of(track: Track) -> dict[str, float] | None:
    if track.focus_low is None:
        return None
    return {"low": track.focus_low, "mid": track.focus_mid, "high": track.focus_high}


def band_focus_sentence(shares: dict[str, float]) -> str:
    """What the source projects read off their heatmaps by eye, in words."""
    top = max(BANDS, key=lambda b: shares[b])
    lead = "mostly" if shares[top] >= 0.5 else "most of all"
    rest = ", ".join(f"{b} {shares[b]:.0%}" for b in BANDS)
    return f"The model listened {lead} to {BAND_WORDS[top]} ({rest})."


def shared_genres(pa: dict[str, float], pb: dict[str, float]) -> dict[str, float]:
    """Per genre, the probability two tracks' predictions have in common (the smaller one).

    The sum is the overlap of the two distributions (1 minus their total variation
    distance): 1 when the model heard the same genre mix in both, 0 when nothing in
    common.
    """
    return {g: min(pa.get(g, 0.0), pb.get(g, 0.0)) for g in sorted(set(pa) | set(pb))}
