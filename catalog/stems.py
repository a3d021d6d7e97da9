"""Stem-set records: which stem files exist for which audio content, model and settings.

The catalog only stores and answers here; the separation itself lives in
``ingest.stems``. A stem set is keyed by (content hash, model, settings hash), never
by track id or path, so every track with the same audio shares one set. Stem paths
are stored relative to the data directory and handed out absolute.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload

from catalog.clock import utc_now
from catalog.paths import stored_path
from catalog.schema import Stem, StemSet, StemStatus, Track, TrackStatus
from catalog.store import Catalog


@dataclass(frozen=True)
class StemKey:
    """What a separation's result depends on; the cache key."""

    content_hash: str
    model: str
    settings_hash: str


@dataclass
class StemSetRecord:
    """A stored stem set, with absolute paths (plain data for the layers above)."""

    id: int
    key: StemKey
    settings: dict
    status: str
    error: str | None
    directory: Path | None
    format: str | None
    sample_rate: int | None
    channels: int | None
    frames: int | None
    device: str | None
    compute_seconds: float | None
    created_at: datetime
    updated_at: datetime
    stems: dict[str, Path] = field(default_factory=dict)

    def missing_files(self) -> list[str]:
        """Names of stems whose file is gone from disk (deleted by hand, disk cleaned)."""
        return [name for name, path in self.stems.items() if not path.is_file()]

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "content_hash": self.key.content_hash,
            "model": self.key.model,
            "settings_hash": self.key.settings_hash,
            "settings": self.settings,
            "status": self.status,
            "error": self.error,
            "directory": str(self.directory) if self.directory else None,
            "format": self.format,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "frames": self.frames,
            "duration_s": self.frames / self.sample_rate
            if self.frames is not None and self.sample_rate
            else None,
            "device": self.device,
            "compute_seconds": self.compute_seconds,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "stems": {name: str(path) for name, path in self.stems.items()},
        }


@dataclass
class StemTarget:
    """What a separation needs to know about a catalogued track."""

    track_id: int
    path: str
    content_hash: str | None
    size: int
    mtime_ns: int
    status: str
    duration_s: float | None


def _relative(catalog: Catalog, path: Path) -> str:
    return stored_path(catalog.paths.root, path)


def _absolute(catalog: Catalog, stored: str) -> Path:
    return catalog.artefact_path(stored)


def _record(catalog: Catalog, row: StemSet) -> StemSetRecord:
    return StemSetRecord(
        id=row.id,
        key=StemKey(row.content_hash, row.model, row.settings_hash),
        settings=json.loads(row.settings),
        status=row.status,
        error=row.error,
        directory=_absolute(catalog, row.directory) if row.directory else None,
        format=row.format,
        sample_rate=row.sample_rate,
        channels=row.channels,
        frames=row.frames,
        device=row.device,
        compute_seconds=row.compute_seconds,
        created_at=row.created_at,
        updated_at=row.updated_at,
        stems={stem.name: _absolute(catalog, stem.path) for stem in row.stems},
    )


def _where_key(key: StemKey):
    return (
        StemSet.content_hash == key.content_hash,
        StemSet.model == key.model,
        StemSet.settings_hash == key.settings_hash,
    )


def _stem_set_row(s: Session, key: StemKey, settings: dict, now: datetime) -> StemSet:
    """The row for ``key``, created if absent, with its settings brought up to date."""
    row = s.scalar(select(StemSet).where(*_where_key(key)))
    if row is None:
        row = StemSet(
            content_hash=key.content_hash,
            model=key.model,
            settings_hash=key.settings_hash,
            created_at=now,
        )
        s.add(row)
    row.settings = json.dumps(settings, sort_keys=True)
    return row


def get_stem_set(catalog: Catalog, key: StemKey) -> StemSetRecord | None:
    """The stored set for ``key`` (complete or failed), or None."""
    with catalog.sessions() as s:
        row = s.scalar(select(StemSet).where(*_where_key(key)).options(selectinload(StemSet.stems)))
        return _record(catalog, row) if row is not None else None


def save_stem_set(
    catalog: Catalog,
    key: StemKey,
    settings: dict,
    directory: Path,
    stems: dict[str, Path],
    *,
    format: str,
    sample_rate: int,
    channels: int,
    frames: int,
    device: str,
    compute_seconds: float,
) -> StemSetRecord:
    """Record a complete separation (replacing a failed or stale record for the key)."""
    now = utc_now()
    with catalog.sessions.begin() as s:
        row = _stem_set_row(s, key, settings, now)
        row.status = StemStatus.OK
        row.error = None
        row.directory = _relative(catalog, directory)
        row.format = format
        row.sample_rate = sample_rate
        row.channels = channels
        row.frames = frames
        row.device = device
        row.compute_seconds = compute_seconds
        row.updated_at = now
        s.flush()
        s.execute(delete(Stem).where(Stem.stem_set_id == row.id))
        s.add_all(
            Stem(stem_set_id=row.id, name=name, path=_relative(catalog, path))
            for name, path in stems.items()
        )
        set_id = row.id
    with catalog.sessions() as s:
        row = s.scalar(
            select(StemSet).where(StemSet.id == set_id).options(selectinload(StemSet.stems))
        )
        return _record(catalog, row)


def save_stem_failure(catalog: Catalog, key: StemKey, settings: dict, error: str) -> None:
    """Record why a separation failed, so a batch run does not retry it every time."""
    now = utc_now()
    with catalog.sessions.begin() as s:
        row = _stem_set_row(s, key, settings, now)
        row.status = StemStatus.FAILED
        row.error = error
        row.directory = None
        row.format = row.sample_rate = row.channels = row.frames = None
        row.device = row.compute_seconds = None
        row.updated_at = now
        s.flush()
        s.execute(delete(Stem).where(Stem.stem_set_id == row.id))


def stem_sets_for_hash(catalog: Catalog, content_hash: str | None) -> list[StemSetRecord]:
    """Every set stored for one audio content, newest first."""
    if not content_hash:
        return []
    with catalog.sessions() as s:
        rows = s.scalars(
            select(StemSet)
            .where(StemSet.content_hash == content_hash)
            .options(selectinload(StemSet.stems))
            .order_by(StemSet.updated_at.desc(), StemSet.id.desc())
        ).all()
        return [_record(catalog, row) for row in rows]


def latest_stems(catalog: Catalog, content_hash: str | None) -> dict[str, str]:
    """Stem name -> absolute path of the newest complete set (the ``artefacts`` entry)."""
    for record in stem_sets_for_hash(catalog, content_hash):
        if record.status == StemStatus.OK:
            return {name: str(path) for name, path in record.stems.items()}
    return {}


def stem_target(catalog: Catalog, track_id: int) -> StemTarget:
    """The facts a separation needs about one track (raises LookupError if absent)."""
    with catalog.sessions() as s:
        track = s.get(Track, track_id)
        if track is None:
            raise LookupError(f"no track with id {track_id}")
        return _target(track)


def _target(track: Track) -> StemTarget:
    return StemTarget(
        track.id,
        track.path,
        track.content_hash,
        track.size,
        track.mtime_ns,
        track.status,
        track.duration_s,
    )


def stem_targets(catalog: Catalog, genre: str | None = None) -> list[StemTarget]:
    """Tracks a batch separation covers: present ones (not missing), optionally one genre."""
    query = select(Track).where(Track.status != TrackStatus.MISSING)
    if genre:
        query = query.where(Track.genre == genre)
    with catalog.sessions() as s:
        return [_target(t) for t in s.scalars(query.order_by(Track.path))]


def orphaned_stem_sets(catalog: Catalog, keep_missing: bool = False) -> list[StemSetRecord]:
    """Sets whose audio no track in the library has any more.

    Edited files (their old hash is on no track) always count as gone. Tracks marked
    missing count as gone too unless ``keep_missing``: their rows stay so a moved file
    keeps its id, but the stems are a cache that is recomputed on demand.
    """
    alive = [TrackStatus.OK, TrackStatus.FAILED]
    if keep_missing:
        alive.append(TrackStatus.MISSING)
    present = (
        select(Track.content_hash)
        .where(Track.status.in_(alive), Track.content_hash.is_not(None))
        .scalar_subquery()
    )
    with catalog.sessions() as s:
        rows = s.scalars(
            select(StemSet)
            .where(StemSet.content_hash.not_in(present))
            .options(selectinload(StemSet.stems))
            .order_by(StemSet.id)
        ).all()
        return [_record(catalog, row) for row in rows]


def known_directories(catalog: Catalog) -> set[Path]:
    """Directories of every stored set (prune keeps these on disk)."""
    with catalog.sessions() as s:
        rows = s.scalars(select(StemSet.directory).where(StemSet.directory.is_not(None)))
        return {_absolute(catalog, d) for d in rows}


def delete_stem_sets(catalog: Catalog, ids: list[int]) -> int:
    """Forget these sets (their files are the caller's to remove)."""
    if not ids:
        return 0
    with catalog.sessions.begin() as s:
        s.execute(delete(StemSet).where(StemSet.id.in_(ids)))
    return len(ids)
