"""The one band table: where low, mid and high split, and what each holds, in words.

Grad-CAM's band focus (:mod:`embeddings.gradcam`) splits a heatmap's mass at these
edges, the heatmap image draws them, and the catalog's sentences name them. The
catalog may import this module and no other of ``embeddings`` (``tests/test_layers.py``):
it is a table, imports nothing, and runs nothing, so the catalog still never
analyses audio, and the edges cannot drift apart from the words that quote them.
"""

from __future__ import annotations

from typing import NamedTuple


class Band(NamedTuple):
    name: str
    low_hz: float  # inclusive lower edge of the band's mel-band centres
    high_hz: float  # upper edge
    words: str  # what a listener hears there


LOW_HZ = 250.0
HIGH_HZ = 4000.0
BAND_TABLE = (
    Band("low", 0.0, LOW_HZ, "the bass and kick (below 250 Hz)"),
    Band("mid", LOW_HZ, HIGH_HZ, "the mid range where vocals and most instruments sit"
         " (250 Hz to 4 kHz)"),
    Band("high", HIGH_HZ, float("inf"), "the highs, cymbals and air (above 4 kHz)"),
)  # fmt: skip
BANDS = tuple(band.name for band in BAND_TABLE)  # ("low", "mid", "high")
BAND_WORDS = {band.name: band.words for band in BAND_TABLE}


def band_focus_sentence(shares: dict[str, float]) -> str:
    """What the source projects read off their heatmaps by eye, in words."""
    top = max(BANDS, key=lambda b: shares[b])
    rest = ", ".join(f"{b} {shares[b]:.0%}" for b in BANDS)
    # bands whose shares read the same when rounded to a percent: no "mostly" for a tie
    tied = [b for b in BANDS if round(shares[b] * 100) == round(shares[top] * 100)]
    if len(tied) > 1:
        words = " and to ".join(BAND_WORDS[b] for b in tied)
        return f"The model listened equally to {words} ({rest})."
    lead = "mostly" if shares[top] >= 0.5 else "most of all"
    return f"The model listened {lead} to {BAND_WORDS[top]} ({rest})."
