"""Library genre models, their per-track predictions and the genre-tag backups, in SQLite.

A model belongs to the embedding model whose vectors it was fitted on: when the
catalog's active model changes, the old genre model no longer applies and none is
active until ``sonic learn-genres`` runs again. Arrays are float32 blobs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, insert, select, update

from catalog.clock import utc_now
from catalog.records import GenreModelRecord
from catalog.schema import GenreModel, LibraryPrediction, TagBackup, Track, TrackStatus

SHIPPED_THRESHOLD_KEY = "shipped_uncertain_below"
UNCERTAIN = "uncertain"


def _blob(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype=np.float32).tobytes()


def save_model(catalog, record: GenreModelRecord) -> int:
    """Store a new model version and make it the active one; returns its version."""
    with catalog.sessions.begin() as s:
        s.execute(update(GenreModel).values(active=0))
        row = GenreModel(
            created_at=utc_now(),
            embedding_model_id=record.embedding_model_id,
            genres=json.dumps(record.genres),
            dim=int(record.coef.shape[1]),
            coef=_blob(record.coef),
            intercept=_blob(record.intercept),
            mean=_blob(record.mean),
            scale=_blob(record.scale),
            temperature=float(record.temperature),
            threshold=float(record.threshold),
            target_precision=float(record.target_precision),
            shipped_threshold=record.shipped_threshold,
            min_tracks=int(record.min_tracks),
            n_tracks=int(record.n_tracks),
            metrics=json.dumps(record.metrics),
            left_out=json.dumps(record.left_out),
            active=1,
        )
        s.add(row)
        s.flush()
        return int(row.version)


def _record(row: GenreModel) -> GenreModelRecord:
    n = len(json.loads(row.genres))

    def arr(blob: bytes, shape) -> np.ndarray:
        return np.frombuffer(blob, dtype=np.float32).reshape(shape).copy()

    return GenreModelRecord(
        genres=json.loads(row.genres),
        coef=arr(row.coef, (n, row.dim)),
        intercept=arr(row.intercept, (n,)),
        mean=arr(row.mean, (row.dim,)),
        scale=arr(row.scale, (row.dim,)),
        temperature=row.temperature,
        threshold=row.threshold,
        target_precision=row.target_precision,
        embedding_model_id=row.embedding_model_id,
        min_tracks=row.min_tracks,
        n_tracks=row.n_tracks,
        metrics=json.loads(row.metrics),
        left_out=json.loads(row.left_out),
        shipped_threshold=row.shipped_threshold,
        version=row.version,
    )


def active_model(catalog) -> GenreModelRecord | None:
    """The newest fitted model for the catalog's active embedding model, if any."""
    with catalog.sessions() as s:
        row = s.scalar(
            select(GenreModel)
            .where(GenreModel.active == 1,
                   GenreModel.embedding_model_id == catalog.active_model_id)
            .order_by(GenreModel.version.desc())
        )  # fmt: skip
        return _record(row) if row is not None else None


def active_version(catalog) -> int | None:
    """Just the version of :func:`active_model` (one indexed read, no blobs)."""
    with catalog.sessions() as s:
        return s.scalar(
            select(GenreModel.version)
            .where(GenreModel.active == 1,
                   GenreModel.embedding_model_id == catalog.active_model_id)
            .order_by(GenreModel.version.desc())
        )  # fmt: skip


@dataclass
class TrainingRow:
    track_id: int
    embedding: np.ndarray
    genres: list[str]  # normalised tag genres, tag order
    group: str  # the album (artist + album), else the folder: the unit of CV
    path: str
    raw: list[str] | None  # the genre field as read; None: never read (indexed before 0005)
    shipped_genre: str | None
    shipped_confidence: float | None


def training_rows(catalog) -> list[TrainingRow]:
    """Every analysed track of the active model with its embedding and tag genres."""
    query = select(
        Track.id, Track.embedding, Track.genre_tags, Track.artist, Track.album, Track.path,
        Track.genre_tag_raw, Track.genre, Track.confidence,
    ).where(
        Track.status == TrackStatus.OK,
        Track.model_id == catalog.active_model_id,
        Track.embedding.is_not(None),
    )
    rows = []
    with catalog.sessions() as s:
        for tid, blob, tags, artist, album, path, raw, genre, conf in s.execute(query):
            folder = str(path).rsplit("/", 1)[0]
            group = f"album:{artist or ''}\x1f{album}" if album else f"folder:{folder}"
            rows.append(TrainingRow(
                tid, np.frombuffer(blob, dtype=np.float32), json.loads(tags) if tags else [],
                group, path, json.loads(raw) if raw is not None else None, genre, conf,
            ))  # fmt: skip
    return rows


def store_predictions(
    catalog,
    version: int,
    track_ids: Iterable[int],
    genres: list[str],
    probabilities: np.ndarray,
    source: str,
) -> int:
    """Replace these tracks' library predictions with ``probabilities`` (rows in id order)."""
    ids = [int(i) for i in track_ids]
    if not ids:
        return 0
    best = probabilities.argmax(axis=1)
    rows = [
        {"track_id": tid, "model_version": version, "genre": genres[int(best[i])],
         "confidence": float(probabilities[i, best[i]]), "source": source,
         "probabilities": _blob(probabilities[i])}
        for i, tid in enumerate(ids)
    ]  # fmt: skip
    with catalog.sessions.begin() as s:
        for start in range(0, len(ids), 500):
            s.execute(
                delete(LibraryPrediction).where(
                    LibraryPrediction.track_id.in_(ids[start : start + 500])
                )
            )
        s.execute(insert(LibraryPrediction), rows)
    return len(rows)


def unpredicted(catalog, version: int) -> list[tuple[int, np.ndarray]]:
    """(id, embedding) of analysed tracks of the active model not yet predicted by ``version``."""
    done = select(LibraryPrediction.track_id).where(LibraryPrediction.model_version == version)
    query = select(Track.id, Track.embedding).where(
        Track.status == TrackStatus.OK,
        Track.model_id == catalog.active_model_id,
        Track.embedding.is_not(None),
        Track.id.not_in(done),
    )
    with catalog.sessions() as s:
        return [(i, np.frombuffer(b, dtype=np.float32)) for i, b in s.execute(query)]


# -- tag backups ------------------------------------------------------------------------------


def add_backup(
    catalog, track_id: int, path: str, field: str, old_values: list[str] | None,
    encoding: int | None, position: int | None, new_values: list[str],
) -> int:  # fmt: skip
    with catalog.sessions.begin() as s:
        row = TagBackup(
            track_id=track_id, path=path, field=field,
            old_values=None if old_values is None else json.dumps(old_values, ensure_ascii=False),
            encoding=encoding, position=position,
            new_values=json.dumps(new_values, ensure_ascii=False),
            written_at=utc_now(),
        )  # fmt: skip
        s.add(row)
        s.flush()
        return int(row.id)


@dataclass
class Backup:
    id: int
    track_id: int
    path: str
    field: str
    old_values: list[str] | None
    encoding: int | None
    position: int | None
    new_values: list[str]


def pending_backups(catalog, track_ids: Iterable[int] | None = None) -> list[Backup]:
    """Backups not yet undone, newest first (so undoing them in order restores the oldest)."""
    query = select(TagBackup).where(TagBackup.undone_at.is_(None))
    if track_ids is not None:
        query = query.where(TagBackup.track_id.in_(list(track_ids)))
    with catalog.sessions() as s:
        return [
            Backup(b.id, b.track_id, b.path, b.field,
                   None if b.old_values is None else json.loads(b.old_values),
                   b.encoding, b.position, json.loads(b.new_values))
            for b in s.scalars(query.order_by(TagBackup.id.desc()))
        ]  # fmt: skip


def mark_undone(catalog, backup_id: int) -> None:
    with catalog.sessions.begin() as s:
        s.execute(update(TagBackup).where(TagBackup.id == backup_id).values(undone_at=utc_now()))
