"""Why two tracks come out similar: the one answer the CLI, the REST API and the UI give.

Everything comes from what the catalog stores, nothing runs a model, so the answer
is instant and the same every time it is asked:

- the sound-alike score, the cosine of the two track embeddings in the index;
- the genres both are predicted as (the overlap of the two distributions) and how
  much of each track's timeline falls in the genres they share;
- the band-focus profiles of their Grad-CAM heatmaps (which bands the model
  listened to);
- the moments (segments) whose embeddings are closest.

There used to be two answers (``compare_tracks`` for REST and the UI, and
``explain_similarity`` for the CLI) that disagreed; ``score``/``cosine`` and
``summary``/``sentence`` are the same values under both names so that clients of
either keep working.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from catalog.explanations import shared_genres
from catalog.schema import Segment
from catalog.store import Catalog
from catalog.track_details import track_details
from catalog.track_summaries import track_summary_from_details
from embeddings.bands import BANDS


def why_similar(catalog: Catalog, track_id: int, other_id: int, pairs: int = 3) -> dict:
    """Why ``track_id`` and ``other_id`` are close: structured data and one sentence.

    Raises :class:`~catalog.errors.TrackNotFound` if either id is unknown.
    """
    a, b = track_details(catalog, track_id), track_details(catalog, other_id)
    index = catalog.index()
    va, vb = index.vector(track_id), index.vector(other_id)
    cosine = float(np.dot(va, vb)) if va is not None and vb is not None else None

    pa, pb = a["probabilities"], b["probabilities"]
    shared = sorted(
        ({"genre": g, "probability_a": pa.get(g, 0.0), "probability_b": pb.get(g, 0.0),
          "shared": common} for g, common in shared_genres(pa, pb).items()),
        key=lambda row: -row["shared"],
    )  # fmt: skip
    overlap = float(sum(row["shared"] for row in shared))
    top = [row for row in shared if row["shared"] >= 0.1][:3]
    top_genres = {row["genre"] for row in top}

    focus_a, focus_b = _focus(a), _focus(b)
    focus_distance = (
        float(sum(abs(focus_a[k] - focus_b[k]) for k in BANDS) / 2) if focus_a and focus_b else None
    )
    moments = closest_moments(catalog, track_id, other_id, pairs)

    sentence = _sentence(cosine, top, overlap, focus_a, focus_b, moments)
    return {
        "a": track_id,
        "b": other_id,
        "track": track_summary_from_details(a),
        "other": track_summary_from_details(b),
        "score": cosine,
        "cosine": cosine,
        "genre_overlap": overlap,
        "shared_genres": shared,
        "timeline_share": {
            "track": _timeline_share(a, top_genres),
            "other": _timeline_share(b, top_genres),
        },
        "band_focus": {"a": focus_a, "b": focus_b, "distance": focus_distance},
        "closest_moments": moments,
        "sentence": sentence,
        "summary": sentence,
    }


def closest_moments(catalog: Catalog, a: int, b: int, pairs: int = 3) -> list[dict]:
    """The ``pairs`` (segment of a, segment of b) with the most similar embeddings."""
    starts_a, seg_a = _segments(catalog, a)
    starts_b, seg_b = _segments(catalog, b)
    if not len(seg_a) or not len(seg_b):
        return []
    sims = seg_a @ seg_b.T
    moments = []
    for flat in np.argsort(sims, axis=None)[::-1][:pairs]:
        i, j = np.unravel_index(flat, sims.shape)
        moments.append(
            {"a_start_s": float(starts_a[i]), "b_start_s": float(starts_b[j]),
             "cosine": float(sims[i, j])}
        )  # fmt: skip
    return moments


def _focus(details: dict) -> dict[str, float] | None:
    explanation = details.get("explanation")
    return explanation["band_focus"] if explanation else None


def _timeline_share(details: dict, genres: set[str]) -> float | None:
    segments = details["timeline"]
    if not segments:
        return None
    return sum(seg["genre"] in genres for seg in segments) / len(segments)


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


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def _sentence(
    cosine: float | None,
    top: list[dict],
    overlap: float,
    focus_a: dict[str, float] | None,
    focus_b: dict[str, float] | None,
    moments: list[dict],
) -> str:
    if cosine is None:
        parts = ["one of the tracks has no embedding in the index, so no similarity score"]
    else:
        parts = [f"cosine similarity {cosine:.3f}"]
    if top:
        names = ", ".join(f"{r['genre']} ({r['probability_a']:.0%} / {r['probability_b']:.0%})"
                          for r in top)  # fmt: skip
        parts.append(f"the model hears both mostly as {names}")
        parts.append(f"their genre predictions overlap by {overlap:.0%}")
    else:
        parts.append(
            f"their genre predictions barely overlap ({overlap:.0%}), so the likeness is in"
            " timbre or texture the genre labels miss"
        )
    if focus_a and focus_b:
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
    return "; ".join(parts) + "."
