"""Three answers to "what genre is this?": the file's tag, the library model, the GTZAN head.

Each prediction below its calibrated threshold shows as "uncertain" rather than a
confident wrong genre. The library model's threshold is the one cross-validation
chose at ``sonic learn-genres``; the shipped head's is measured on the library's own
tags when there are enough of them, else the default ingest stored (measured on
GTZAN mini cross-validation, docs/benchmarks.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import select

from catalog.genre_names import GTZAN_TO_CANONICAL
from catalog.genre_store import SHIPPED_THRESHOLD_KEY, UNCERTAIN
from catalog.schema import GenreModel, LibraryPrediction, Track, TrackStatus

DEFAULT_SHIPPED_THRESHOLD = 0.0  # no abstention until ingest stores the measured default


def library_state(catalog) -> dict | None:
    """The active library model's version, genres and thresholds (no arrays), or None."""
    with catalog.sessions() as s:
        row = s.execute(
            select(GenreModel.version, GenreModel.genres, GenreModel.threshold,
                   GenreModel.shipped_threshold)
            .where(GenreModel.active == 1,
                   GenreModel.embedding_model_id == catalog.active_model_id)
            .order_by(GenreModel.version.desc())
        ).first()  # fmt: skip
    if row is None:
        return None
    return {"version": row[0], "genres": json.loads(row[1]), "threshold": row[2],
            "shipped_threshold": row[3]}  # fmt: skip


def shipped_threshold(catalog, state: dict | None) -> float:
    if state and state.get("shipped_threshold") is not None:
        return float(state["shipped_threshold"])
    return float(catalog.meta(SHIPPED_THRESHOLD_KEY, str(DEFAULT_SHIPPED_THRESHOLD)))


def _answer(genre: str | None, confidence: float | None, threshold: float) -> dict | None:
    if genre is None or confidence is None:
        return None
    sure = confidence >= threshold
    return {"genre": genre if sure else UNCERTAIN, "predicted": genre,
            "confidence": float(confidence), "threshold": float(threshold),
            "uncertain": not sure}  # fmt: skip


def genre_views(catalog, track_ids: Iterable[int]) -> dict[int, dict]:
    """``{"tag", "library", "gtzan"}`` for each track id (missing parts are None)."""
    ids = [int(i) for i in track_ids]
    if not ids:
        return {}
    state = library_state(catalog)
    gtzan_t = shipped_threshold(catalog, state)
    with catalog.sessions() as s:
        tracks = s.execute(
            select(Track.id, Track.genre_tag_raw, Track.genre_tags, Track.genre,
                   Track.confidence).where(Track.id.in_(ids))
        ).all()  # fmt: skip
        preds = {}
        if state is not None:
            preds = {
                r[0]: r[1:]
                for r in s.execute(
                    select(LibraryPrediction.track_id, LibraryPrediction.genre,
                           LibraryPrediction.confidence, LibraryPrediction.source)
                    .where(LibraryPrediction.track_id.in_(ids),
                           LibraryPrediction.model_version == state["version"])
                )
            }  # fmt: skip
    out = {}
    for tid, raw, tags, genre, confidence in tracks:
        tag = None
        if raw is not None:
            tag = {"genres": json.loads(tags) if tags else [], "raw": json.loads(raw)}
        library = None
        if tid in preds:
            g, c, source = preds[tid]
            library = _answer(g, c, state["threshold"])
            library.update(model_version=state["version"], source=source)
        gtzan = _answer(genre, confidence, gtzan_t)
        if gtzan is not None:
            gtzan["canonical"] = GTZAN_TO_CANONICAL.get(genre, genre)
        out[tid] = {"tag": tag, "library": library, "gtzan": gtzan}
    return out


def disagreements(catalog, limit: int = 200) -> dict:
    """Tracks whose tag the library model confidently contradicts, and confident suggestions
    for untagged tracks. Only tags in the model's own genres can be contradicted: a
    "britpop" tag on a model that knows no britpop says nothing against "rock".
    """
    state = library_state(catalog)
    if state is None:
        return {"model_version": None, "mistagged": [], "untagged": []}
    known = set(state["genres"])
    query = (
        select(Track.id, Track.path, Track.artist, Track.title, Track.genre_tags,
               Track.genre_tag_raw, LibraryPrediction.genre, LibraryPrediction.confidence,
               LibraryPrediction.source)
        .join(LibraryPrediction, LibraryPrediction.track_id == Track.id)
        .where(LibraryPrediction.model_version == state["version"],
               LibraryPrediction.confidence >= state["threshold"],
               Track.status == TrackStatus.OK)
        .order_by(LibraryPrediction.confidence.desc(), Track.id)
    )  # fmt: skip
    mistagged, untagged = [], []
    with catalog.sessions() as s:
        for tid, path, artist, title, tags, raw, genre, conf, source in s.execute(query):
            tag_genres = json.loads(tags) if tags else []
            row = {"id": tid, "path": path, "artist": artist, "title": title,
                   "tag": tag_genres, "raw_tag": json.loads(raw) if raw else None,
                   "suggestion": genre, "confidence": conf, "source": source}  # fmt: skip
            if not tag_genres:
                untagged.append(row)
            elif known.intersection(tag_genres) and genre not in tag_genres:
                mistagged.append(row)
    return {
        "model_version": state["version"],
        "threshold": state["threshold"],
        "mistagged": mistagged[:limit],
        "untagged": untagged[:limit],
        "total_mistagged": len(mistagged),
        "total_untagged": len(untagged),
    }
