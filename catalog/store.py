"""The catalog: one database (SQLite, or PostgreSQL) plus one FAISS index in a data directory.

Every change to what should be in the index is one database transaction that also
bumps ``index_version``; the in-memory FAISS index is updated right after the
commit and written to disk now and then. If the process dies between the two, the
file on disk carries an older version, and the next :meth:`Catalog.index` call
rebuilds it from the embeddings stored in the database. The database is always the
truth.

With a PostgreSQL URL the database is shared: several ingests may write at once
(each file is claimed, see :mod:`catalog.claims`) and several servers read. The
index version is then bumped under a transaction lock, so versions follow commit
order, and a process whose index missed another's commits catches up from the
database (:meth:`Catalog.sync_index`) instead of trusting its own copy.

:class:`Catalog` is one object for its callers, put together from one mixin per job:

- :mod:`catalog.meta_store`: the ``catalog_meta`` rows (index version, active
  model, library roots), cached reads and locked writes;
- :mod:`catalog.checkpoint_memory`: which model a checkpoint file holds;
- :mod:`catalog.index_keeper`: the FAISS index kept in step with the database;
- :mod:`catalog.track_lookups`: what the scanner reads to plan a run;
- :mod:`catalog.track_writes`: analysed and failed tracks;
- :mod:`catalog.track_moves`: touched, moved, missing and returning files.
"""

from __future__ import annotations

import os
from pathlib import Path

from catalog.checkpoint_memory import CheckpointMemory
from catalog.db import DATABASE_URL_ENV, is_postgres, open_database, parse_database_url
from catalog.genre_names import MAPPING_FILE, load_mapping
from catalog.index import VectorIndex
from catalog.paths import CatalogPaths, resolve_stored
from catalog.track_lookups import TrackLookups
from catalog.track_moves import TrackMoves
from catalog.track_writes import TrackWrites


class Catalog(TrackWrites, TrackMoves, TrackLookups, CheckpointMemory):
    """Reads and writes one catalog.

    On SQLite a single writer at a time (see ``ingest.lock``); on PostgreSQL several,
    each claiming the files it analyses. ``database_url`` defaults to
    ``$SONIC_DATABASE_URL``, as the CLI's ``--database-url`` does; unset, the catalog
    is the SQLite file in ``data_dir``. The data directory holds the index file,
    heatmaps and stems either way.
    """

    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        self.paths = CatalogPaths(Path(data_dir)).ensure()
        url = database_url or os.environ.get(DATABASE_URL_ENV) or None
        self.url = parse_database_url(url) if url else None
        self.engine, self.sessions = open_database(self.paths.database, self.url)
        self.is_postgres = is_postgres(self.engine)
        self._index: VectorIndex | None = None
        self.compact_ivf = True  # bench/query.py turns it off to keep exact ground truth
        self._index_file_stat: tuple[int, int, int] | None = None
        self.index_repaired = False
        self._open_meta_cache()

    def describe_database(self) -> str:
        """Where the rows live, to show: the SQLite file, or the URL without its password."""
        if self.url is not None:
            return self.url.render_as_string(hide_password=True)
        return str(self.paths.database)

    def close(self) -> None:
        self._close_meta_cache()
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the data directory's own files ----------------------------------------------

    def artefact_path(self, stored: str | None) -> Path | None:
        """The file a stored artefact path (heatmap, stem) names in this data directory now."""
        return resolve_stored(self.paths.root, stored) if stored else None

    def genre_mapping(self) -> dict[str, str]:
        """The owner's genre synonyms (``genres.toml`` in the data directory), re-read on change.

        Raises :class:`catalog.genre_names.GenreMappingError` for a broken file.
        """
        path = self.paths.root / MAPPING_FILE
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            stamp = None
        if getattr(self, "_mapping_stamp", "unread") != stamp:
            self._mapping = load_mapping(path)
            self._mapping_stamp = stamp
        return self._mapping
