"""The catalog's health in numbers: tracks by status, audio hours, models, the index.

Apart from :mod:`catalog.queries` (what a listener asks) because it is what
``sonic status`` and the service's status page ask, and reads the whole table.
"""

from __future__ import annotations

from sqlalchemy import func, select

from catalog.schema import Track, TrackStatus
from catalog.store import Catalog


def stats(catalog: Catalog, check_index_file: bool = True) -> dict:
    """Counts by status, audio hours, the active model and the index's health.

    ``check_index_file=False`` describes the index in memory instead of reading the
    file on disk (a long-lived reader asks often; the file may be gigabytes).
    """
    with catalog.sessions() as s:
        by_status = dict(s.execute(select(Track.status, func.count()).group_by(Track.status)).all())
        # one pass over the analysed tracks for both (a library may hold 300k)
        hours, other_model = s.execute(
            select(
                func.sum(Track.duration_s),
                func.count().filter(catalog.of_another_model()),
            ).where(Track.status == TrackStatus.OK)
        ).one()
        failures = s.execute(
            select(Track.error, func.count())
            .where(Track.status == TrackStatus.FAILED)
            .group_by(Track.error)
            .order_by(func.count().desc())
            .limit(10)
        ).all()
    return {
        "data_dir": str(catalog.paths.root),
        "database": catalog.describe_database(),
        "tracks": {status: int(by_status.get(status, 0)) for status in TrackStatus.ALL},
        "audio_hours": float(hours or 0) / 3600,
        "active_model_id": catalog.active_model_id,
        # analysed by an earlier model: out of search until an ingest redoes them
        "other_model_tracks": int(other_model or 0),
        "top_failure_reasons": [{"reason": r, "tracks": int(n)} for r, n in failures],
        "index": catalog.index_health() if check_index_file else _index_in_memory(catalog),
    }


def _index_in_memory(catalog: Catalog) -> dict:
    index = catalog.index()
    db_version = catalog.index_version()
    return {
        "vectors": len(index),
        "version": index.version,
        "db_version": db_version,
        "current": index.version == db_version,
    }
