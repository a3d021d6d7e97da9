"""Explanations from what the catalog holds: band focus in words, and "why similar".

Nothing here runs a model. A pair of tracks is explained by their genre-probability
overlap, their band-focus profiles and the moments (segments) whose embeddings are
closest, so the answer is instant and the same every time it is asked.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from catalog.errors import TrackNotFound
from catalog.schema import Segment, Track
from catalog.store import Catalog

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
    rest = ", ".join(f"{b} {shares[b]:.0%}" for b in BANDS)
    # bands whose shares read the same when rounded to a percent: no "mostly" for a tie
    tied = [b for b in BANDS if round(shares[b] * 100) == round(shares[top] * 100)]
    if len(tied) > 1:
        words = " and to ".join(BAND_WORDS[b] for b in tied)
        return f"The model listened equally to {words} ({rest})."
    lead = "mostly" if shares[top] >= 0.5 else "most of all"
    return f"The model listened {lead} to {BAND_WORDS[top]} ({rest})."


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def _segments(catalog: Catalog, track_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(start times, unit segment embeddings) of a track, in order."""
    with catalog.sessions() as s:
        rows = s.execute(
            select(Segment.start_s, Segment.embedding)
            .where(Segment.track_id == track_id, Segment.embedding.is_not(None))
            .order_by(Segment.idx)
        ).all()
    if not rows:
        return np.zeros(0), np.zeros((0, 0), dtype=np.float32)
    starts = np.array([r[0] for r in rows])
    vectors = np.stack([np.frombuffer(r[1], dtype=np.float16) for r in rows]).astype(np.float32)
    return starts, vectors


def shared_genres(pa: dict[str, float], pb: dict[str, float]) -> dict[str, float]:
    """Per genre, the probability two tracks' predictions have in common (the smaller one).

    The sum is the overlap of the two distributions (1 minus their total variation
    distance): 1 when the model heard the same genre mix in both, 0 when nothing in
    common. Both "why similar" answers report it, so both must compute it the same way.
    """
    return {g: min(pa.get(g, 0.0), pb.get(g, 0.0)) for g in sorted(set(pa) | set(pb))}


def explain_similarity(catalog: Catalog, a: int, b: int, pairs: int = 3) -> dict:
    """Why tracks ``a`` and ``b`` are close: structured data and a short sentence."""
    with catalog.sessions() as s:
        tracks = {t.id: t for t in s.scalars(select(Track).where(Track.id.in_([a, b])))}
        for tid in (a, b):
            if tid not in tracks:
                raise TrackNotFound(f"no track with id {tid}")
        probs = {tid: {g.genre: g.probability for g in tracks[tid].genres} for tid in (a, b)}
    ta, tb = tracks[a], tracks[b]
    index = catalog.index()
    va, vb = index.vector(a), index.vector(b)
    cosine = float(va @ vb) if va is not None and vb is not None else None

    shared = shared_genres(probs[a], probs[b])
    overlap = float(sum(shared.values()))
    top_shared = sorted(shared, key=shared.get, reverse=True)[:3]

    focus_a, focus_b = band_focus_of(ta), band_focus_of(tb)
    focus_distance = (
        float(sum(abs(focus_a[k] - focus_b[k]) for k in BANDS) / 2) if focus_a and focus_b else None
    )

    starts_a, seg_a = _segments(catalog, a)
    starts_b, seg_b = _segments(catalog, b)
    moments = []
    if len(seg_a) and len(seg_b):
        sims = seg_a @ seg_b.T
        best = np.argsort(sims, axis=None)[::-1][:pairs]
        for flat in best:
            i, j = np.unravel_index(flat, sims.shape)
            moments.append(
                {
                    "a_start_s": float(starts_a[i]),
                    "b_start_s": float(starts_b[j]),
                    "cosine": float(sims[i, j]),
                }  # fmt: skip
            )

    parts = []
    if ta.genre == tb.genre and ta.genre:
        parts.append(f"both sound like {ta.genre}")
    parts.append(
        f"their genre profiles overlap {overlap:.0%} (most in {', '.join(top_shared[:2])})"
    )
    if focus_distance is not None:
        top_a = max(BANDS, key=lambda k: focus_a[k])
        top_b = max(BANDS, key=lambda k: focus_b[k])
        if top_a == top_b:
            parts.append(f"the model listened mostly to the {top_a} band in both")
        else:
            parts.append(
                f"the model listened to the {top_a} band in one and the {top_b} in the other"
            )
    if moments:
        m = moments[0]
        parts.append(
            f"the closest moments are {_clock(m['a_start_s'])} and {_clock(m['b_start_s'])}"
            f" (cosine {m['cosine']:.2f})"
        )
    sentence = "; ".join(parts)
    sentence = sentence[0].upper() + sentence[1:] + "."
    return {
        "a": a,
        "b": b,
        "cosine": cosine,
        "genre_overlap": overlap,
        "shared_genres": {g: shared[g] for g in top_shared},
        "band_focus": {"a": focus_a, "b": focus_b, "distance": focus_distance},
        "closest_moments": moments,
        "sentence": sentence,
    }
