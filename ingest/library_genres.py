"""Learning the library's own genres from its tags, and applying them to new tracks.

``learn`` reads what it needs (the embeddings SQLite already holds, the genre
fields of tracks indexed before genre tags were kept), fits
:func:`embeddings.library_genres.learn_genres`, and only then writes: the model,
and a prediction for every analysed track. A library with too few tags raises
:class:`NotEnoughTags` having changed nothing. ``apply`` predicts the tracks a
model has not seen yet from their embeddings alone (no audio is analysed again):
an ingest calls it at its end.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from catalog.genre_names import GTZAN_TO_CANONICAL, normalise_genres
from catalog.genre_store import (
    SHIPPED_THRESHOLD_KEY,
    active_model,
    save_model,
    store_predictions,
    training_rows,
    unpredicted,
)
from catalog.genre_tags import renormalise, set_raw_genre_tags
from catalog.records import GenreModelRecord
from embeddings.library_genres import (
    LinearGenreHead,
    NotEnoughTags,
    choose_threshold,
    learn_genres,
)
from ingest.tags import read_genre_values

# The shipped GTZAN head's "uncertain" line until a library's own tags measure one
# (learn-genres does, on 20 or more tracks tagged in GTZAN's genres): the confidence at
# which a linear head on the shipped embeddings is right 90 % of the time in GTZAN mini
# 5-fold CV (bench/library_genres.py, docs/benchmarks.md#library-genres-issue-24). It is
# optimistic, the backbone having seen those labels; on real music the line measured on
# the owner's tags is the one to trust.
SHIPPED_DEFAULT_THRESHOLD = 0.55
MIN_SHIPPED_CHECK = 20  # tagged tracks in GTZAN's genres needed to measure its threshold

__all__ = ["NotEnoughTags", "apply", "learn", "remember_shipped_threshold"]


def _head(record: GenreModelRecord) -> LinearGenreHead:
    return LinearGenreHead(record.genres, record.coef, record.intercept, record.mean,
                           record.scale, record.temperature)  # fmt: skip


def _shipped_threshold(rows, target: float) -> float | None:
    """The GTZAN head's threshold for ``target`` precision, on tracks tagged in its genres."""
    gtzan = {GTZAN_TO_CANONICAL.get(g, g) for g in _gtzan_names(rows)}
    checked = [r for r in rows if r.genres and r.genres[0] in gtzan and r.shipped_genre]
    if len(checked) < MIN_SHIPPED_CHECK:
        return None
    conf = np.array([r.shipped_confidence or 0.0 for r in checked])
    correct = np.array(
        [GTZAN_TO_CANONICAL.get(r.shipped_genre, r.shipped_genre) in r.genres for r in checked]
    )
    threshold, _, _ = choose_threshold(conf, correct, target)
    return threshold


def _gtzan_names(rows) -> set[str]:
    return {r.shipped_genre for r in rows if r.shipped_genre}


def learn(
    catalog, min_tracks: int = 8, target_precision: float = 0.9, progress=None
) -> dict:
    """Fit, store and apply a library genre model; returns the report (JSON-ready)."""
    if catalog.active_model_id is None:
        raise NotEnoughTags("the catalog holds no analysed tracks yet: run `sonic ingest PATH`")
    mapping = catalog.genre_mapping()  # a broken mapping file fails here, before anything
    rows = training_rows(catalog)
    fresh: dict[int, list[str]] = {}
    for row in rows:
        if row.raw is None and os.path.exists(row.path):
            fresh[row.track_id] = read_genre_values(Path(row.path))
        raw = fresh.get(row.track_id, row.raw) or []
        row.genres = normalise_genres(raw, mapping)
        if progress is not None:
            progress()
    if not rows:
        raise NotEnoughTags("the catalog holds no analysed tracks yet: run `sonic ingest PATH`")
    tagged = sum(1 for r in rows if r.genres)
    if tagged == 0:
        raise NotEnoughTags(
            f"none of the {len(rows)} analysed tracks has a genre tag: tag some files "
            f"(at least {min_tracks} per genre, in two genres or more), ingest them again "
            "and rerun `sonic learn-genres`"
        )
    x = np.stack([r.embedding for r in rows])
    labels = [r.genres[0] if r.genres else None for r in rows]
    learnt = learn_genres(x, labels, [r.group for r in rows], min_tracks, target_precision)
    # it fits: now write, first the tags read just now, then the model and its predictions
    if fresh:
        set_raw_genre_tags(catalog, fresh)
    renormalise(catalog)
    head = learnt.head
    record = GenreModelRecord(
        genres=head.genres, coef=head.coef, intercept=head.intercept, mean=head.mean,
        scale=head.scale, temperature=head.temperature, threshold=learnt.threshold,
        target_precision=target_precision, embedding_model_id=catalog.active_model_id,
        min_tracks=min_tracks, n_tracks=len(learnt.used), metrics=learnt.metrics,
        left_out=learnt.left_out, shipped_threshold=_shipped_threshold(rows, target_precision),
    )  # fmt: skip
    version = save_model(catalog, record)
    used = set(learnt.used.tolist())
    ids = [r.track_id for r in rows]
    store_predictions(catalog, version, [ids[i] for i in learnt.used], head.genres,
                      learnt.oof_probabilities, "cv")  # fmt: skip
    rest = [i for i in range(len(rows)) if i not in used]
    if rest:
        store_predictions(catalog, version, [ids[i] for i in rest], head.genres,
                          head.probabilities(x[rest]), "model")  # fmt: skip
    return {
        "model_version": version,
        "embedding_model_id": catalog.active_model_id,
        "genres": head.genres,
        "tracks": len(rows),
        "tagged": tagged,
        "trained_on": len(used),
        "threshold": learnt.threshold,
        "target_precision": target_precision,
        "shipped_threshold": record.shipped_threshold,
        "left_out": learnt.left_out,
        **learnt.metrics,
    }


def apply(catalog) -> int:
    """Predict every analysed track the active library model has no prediction for yet."""
    record = active_model(catalog)
    if record is None:
        return 0
    todo = unpredicted(catalog, record.version)
    if not todo:
        return 0
    x = np.stack([v for _, v in todo])
    if x.shape[1] != record.coef.shape[1]:
        return 0  # another embedding size: this model cannot read these vectors
    probabilities = _head(record).probabilities(x)
    return store_predictions(
        catalog, record.version, [i for i, _ in todo], record.genres, probabilities, "model"
    )


def remember_shipped_threshold(catalog, threshold: float = SHIPPED_DEFAULT_THRESHOLD) -> None:
    """Store the shipped head's default "uncertain" line, where views read it."""
    if catalog.meta(SHIPPED_THRESHOLD_KEY) != str(threshold):
        with catalog.sessions.begin() as s:
            catalog._set_meta(s, SHIPPED_THRESHOLD_KEY, str(threshold))
