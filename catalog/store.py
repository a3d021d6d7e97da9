"""The catalog: one database (SQLite, or PostgreSQL) plus one FAISS index in a data directory.

Every change to what should be in the index is one SQLite transaction that also
bumps ``index_version``; the in-memory FAISS index is updated right after the
commit and written to disk now and then. If the process dies between the two, the
file on disk carries an older version, and the next :meth:`Catalog.index` call
rebuilds it from the embeddings stored in SQLite. SQLite is always the truth.

With a PostgreSQL URL the database is shared: several ingests may write at once
(each file is claimed, see :meth:`Catalog.claim`) and several servers read. The
index version is then bumped under a transaction lock, so versions follow commit
order, and a process whose index missed another's commits catches up from the
database (:meth:`Catalog.sync_index`) instead of trusting its own copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from catalog.db import (
    DATABASE_URL_ENV,
    is_postgres,
    libpq_conninfo,
    open_database,
    open_reader,
    parse_database_url,
)
from catalog.genre_names import MAPPING_FILE, load_mapping
from catalog.genre_tags import apply_genre_tags
from catalog.index import VectorIndex, read_header
from catalog.paths import CatalogPaths, resolve_stored, stored_path
from catalog.records import Analysis, AudioFacts, Explanation, FileFacts, Tags
from catalog.schema import CatalogMeta, Segment, Track, TrackGenre, TrackStatus

INDEX_VERSION = "index_version"
INDEX_BATCH_ROWS = 20_000  # rows per batch when the index is read from the database
META_LOCK_KEY = 0x534F4E49434D4554  # "SONICMET": pg_advisory_xact_lock key of meta writes
ACTIVE_MODEL = "active_model_id"
EMBEDDING_DIM = "embedding_dim"
LIBRARY_ROOTS = "library_roots"


class FileState(NamedTuple):
    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    status: str
    model_id: str | None
    analysed: bool  # an embedding is stored


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _model_genres_key(model_id: str) -> str:
    return f"genres:{model_id}"


class Catalog:
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
        # The meta cache: every catalog_meta row, as of ``PRAGMA data_version`` below.
        self._meta_lock = threading.Lock()
        self._meta_reader: sqlite3.Connection | Any | None = None
        self._meta_reader_pid: int | None = None
        self._meta_version: int | None = None
        self._meta_values: dict[str, str] = {}

    def describe_database(self) -> str:
        """Where the rows live, to show: the SQLite file, or the URL without its password."""
        if self.url is not None:
            return self.url.render_as_string(hide_password=True)
        return str(self.paths.database)

    def close(self) -> None:
        with self._meta_lock:
            if self._meta_reader is not None and self._meta_reader_pid == os.getpid():
                self._meta_reader.close()
            self._meta_reader, self._meta_version = None, None
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta -------------------------------------------------------------------------

    def meta(self, key: str, default: str | None = None) -> str | None:
        """The committed value of one catalog_meta key (cached; never stale, see below)."""
        return self._meta_snapshot().get(key, default)

    def _meta_snapshot(self) -> dict[str, str]:
        """Every catalog_meta row, read again only when the database changed since.

        The service asks for the active model (and the index version, the genre names)
        on every request; a session per ask cost more than the rest of a catalog read.
        ``PRAGMA data_version`` on a connection that never writes changes whenever any
        other connection, in this process or another (an ingest), commits: a few
        microseconds to learn that the cached rows are still the committed ones. The
        table is a handful of rows, so any commit simply re-reads all of it.
        """
        if self.is_postgres:
            return self._meta_snapshot_postgres()
        with self._meta_lock:
            if self._meta_reader is None or self._meta_reader_pid != os.getpid():
                # a forked child must not share its parent's SQLite connection
                self._meta_reader = open_reader(self.paths.database)
                self._meta_reader_pid, self._meta_version = os.getpid(), None
            reader = self._meta_reader
            version = reader.execute("PRAGMA data_version").fetchone()[0]
            if version != self._meta_version:
                # read after the version: a commit in between is seen now and again later
                rows = reader.execute("SELECT key, value FROM catalog_meta").fetchall()
                self._meta_values = dict(rows)
                self._meta_version = version
            return self._meta_values

    def _meta_snapshot_postgres(self) -> dict[str, str]:
        """Every catalog_meta row, read on each call from a reader of this process's own.

        PostgreSQL has no ``data_version`` to say "nothing changed"; the table is a
        handful of rows and one autocommit round trip on a kept connection costs
        well under a millisecond, so it is simply read again: never stale.
        """
        import psycopg

        with self._meta_lock:
            for attempt in (0, 1):
                if self._meta_reader is None or self._meta_reader_pid != os.getpid():
                    self._meta_reader = psycopg.connect(libpq_conninfo(self.url), autocommit=True)
                    self._meta_reader_pid = os.getpid()
                try:
                    rows = self._meta_reader.execute(
                        "SELECT key, value FROM catalog_meta"
                    ).fetchall()
                    break
                except psycopg.OperationalError:  # the server restarted: reconnect once
                    self._meta_reader = None
                    if attempt:
                        raise
            self._meta_values = dict(rows)
            return self._meta_values

    def _lock_meta(self, session: Session) -> None:
        """PostgreSQL: serialise this transaction's meta writes with every other writer's.

        A transaction-scoped advisory lock, taken before the rows are read: two
        ingests bumping the index version at once would otherwise both read N and
        both write N + 1, and a reader would miss one of the two commits. Held to the
        commit, it makes versions follow commit order. SQLite has one writer anyway.
        """
        if self.is_postgres:
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": META_LOCK_KEY})

    def _set_meta(self, session: Session, key: str, value: str) -> None:
        self._lock_meta(session)
        dialect_insert = pg_insert if self.is_postgres else sqlite_insert
        statement = dialect_insert(CatalogMeta).values(key=key, value=value)
        session.execute(
            statement.on_conflict_do_update(index_elements=["key"], set_={"value": value})
        )

    def _get_meta(self, session: Session, key: str) -> str | None:
        """A meta value inside a write transaction (after the lock, never from a cache)."""
        self._lock_meta(session)
        return session.scalar(select(CatalogMeta.value).where(CatalogMeta.key == key))

    def _bump_version(self, session: Session) -> int:
        current = self._get_meta(session, INDEX_VERSION)
        version = int(current) + 1 if current else 1
        self._set_meta(session, INDEX_VERSION, str(version))
        return version

    def index_version(self) -> int:
        return int(self.meta(INDEX_VERSION, "0"))

    @property
    def active_model_id(self) -> str | None:
        return self.meta(ACTIVE_MODEL)

    def model_genres(self, model_id: str | None) -> list[str]:
        raw = self.meta(_model_genres_key(model_id)) if model_id else None
        return json.loads(raw) if raw else []

    def activate_model(self, model_id: str, genres: list[str], embedding_dim: int) -> bool:
        """Make ``model_id`` the model whose embeddings the index holds.

        Returns True when this changed the active model: the index then holds only
        tracks already analysed by the new model until the others are re-analysed.
        """
        with self.sessions.begin() as s:
            self._set_meta(s, _model_genres_key(model_id), json.dumps(list(genres)))
            if self._get_meta(s, ACTIVE_MODEL) == model_id:
                return False
            self._set_meta(s, ACTIVE_MODEL, model_id)
            self._set_meta(s, EMBEDDING_DIM, str(embedding_dim))
            self._bump_version(s)
        self._index = None
        return True

    # -- the index --------------------------------------------------------------------

    def index(self) -> VectorIndex:
        """The FAISS index, loaded from disk or rebuilt when it disagrees with SQLite."""
        if self._index is None:
            self._index = self._load_or_rebuild_index()
            self._index_file_stat = self._file_stat()
        # once IVF is built it is the only copy of the vectors (catalog.index's doc)
        self._index.compact_ivf = self.compact_ivf
        if self.is_postgres and self._index.ann_builder is None:
            # at IVF sizes, build from the database in batches instead of a copy in memory
            from catalog.index_builds import build_ann_from_database

            self._index.ann_builder = lambda index, kind: build_ann_from_database(self, index, kind)
        return self._index

    def _file_stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.paths.index.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    @property
    def index_loaded(self) -> bool:
        return self._index is not None

    def index_file_changed(self) -> bool:
        """True when the index in memory may be stale: a cheap check for the service.

        SQLite: ``index.faiss`` was replaced since this catalog loaded it (one stat).
        PostgreSQL: the catalog's version moved past the index's (one meta read),
        since the process that committed may be on another machine.
        """
        if self._index is None:
            return False
        if self.is_postgres:
            return self.index_version() != self._index.version
        return self._file_stat() != self._index_file_stat

    def refresh_index(self) -> bool:
        """For long-lived readers (the web service): pick up an index another process saved.

        An ingest in another process saves ``index.faiss`` as it goes. When the file
        on disk carries a different catalog version (or model) than the index held
        here, it is loaded in place of it; the check costs one ``stat`` while the file
        is unchanged. The reader never writes the file. Returns True if it reloaded.
        """
        if self._index is None:
            return False
        if self.is_postgres:  # each server keeps its own index, caught up from the database
            return self.sync_index()
        stat = self._file_stat()
        if stat is None or stat == self._index_file_stat:
            return False
        self._index_file_stat = stat
        try:
            header = read_header(self.paths.index)
            if header.version == self._index.version and header.model_id == self._index.model_id:
                return False
            loaded = VectorIndex.load(self.paths.index)
        except (OSError, ValueError):
            return False  # replaced mid-read or damaged: keep serving what we have
        if loaded.model_id != self.active_model_id:
            return False
        self._index = loaded
        return True

    # -- checkpoints seen ---------------------------------------------------------------

    @staticmethod
    def _checkpoint_key(path: Path) -> tuple[str, os.stat_result]:
        real = os.path.realpath(path)
        digest = hashlib.sha1(os.fsencode(real)).hexdigest()
        return f"checkpoint:{digest}", os.stat(real)

    def remembered_checkpoint(self, path: Path) -> dict | None:
        """What :meth:`remember_checkpoint` stored for ``path``, if the file is unchanged.

        Lets an ingest plan a run (and find nothing to do) without loading torch and
        the network just to learn the model's id. Size and mtime must match.
        """
        try:
            key, stat = self._checkpoint_key(path)
        except OSError:
            return None
        raw = self.meta(key)
        data = json.loads(raw) if raw else None
        if not data or (data.get("size"), data.get("mtime_ns")) != (
            stat.st_size, stat.st_mtime_ns,
        ):  # fmt: skip
            return None
        return data["identity"]

    def remember_checkpoint(self, path: Path, identity: dict) -> None:
        """Remember the identity of the model in checkpoint ``path`` as the file is now."""
        key, stat = self._checkpoint_key(path)
        value = {
            "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "identity": identity,
            "path": os.path.realpath(path),
        }  # fmt: skip
        with self.sessions.begin() as s:
            self._set_meta(s, key, json.dumps(value))

    def artefact_path(self, stored: str | None) -> Path | None:
        """The file a stored artefact path (heatmap, stem) names in this data directory now."""
        return resolve_stored(self.paths.root, stored) if stored else None

    def checkpoint_of_model(self, model_id: str) -> Path | None:
        """A checkpoint file this catalog has seen that holds model ``model_id``, unchanged.

        What ``sonic explain`` loads by default: the model that analysed the track.
        None when no remembered file still holds it (moved, rewritten, or remembered
        before paths were recorded).
        """
        for key, raw in self._meta_snapshot().items():
            if not key.startswith("checkpoint:"):
                continue
            data = json.loads(raw)
            path = data.get("path")
            if not path or data.get("identity", {}).get("model_id") != model_id:
                continue
            if self.remembered_checkpoint(Path(path)) is not None:  # the file is unchanged
                return Path(path)
        return None

    # -- library roots ----------------------------------------------------------------

    def library_roots(self) -> list[Path]:
        """The folders ingests were run on: the only places the service serves audio from."""
        raw = self.meta(LIBRARY_ROOTS)
        return [Path(p) for p in json.loads(raw)] if raw else []

    def add_library_roots(self, roots: Iterable[Path]) -> None:
        """Remember the folders (or files) an ingest was pointed at."""
        new = [str(Path(r).expanduser().absolute()) for r in roots]
        with self.sessions.begin() as s:
            raw = self._get_meta(s, LIBRARY_ROOTS)
            known = json.loads(raw) if raw else []
            merged = list(dict.fromkeys(known + new))
            if merged != known:
                self._set_meta(s, LIBRARY_ROOTS, json.dumps(merged))

    def of_another_model(self):
        """SQL condition: an analysed track whose embedding is not the active model's.

        Such tracks stay out of search until an ingest of their folders redoes them.
        """
        return (Track.status == TrackStatus.OK) & (Track.model_id != self.active_model_id)

    def tracks_of_other_models(self) -> int:
        """How many analysed tracks :meth:`of_another_model` holds for."""
        with self.sessions() as s:
            return int(s.scalar(select(func.count()).where(self.of_another_model())) or 0)

    def _indexable(self):
        return select(Track.id, Track.embedding).where(
            Track.status == TrackStatus.OK,
            Track.model_id == self.active_model_id,
            Track.embedding.is_not(None),
        )

    def _load_or_rebuild_index(self) -> VectorIndex:
        version, model_id = self.index_version(), self.active_model_id
        dim = int(self.meta(EMBEDDING_DIM, "512"))
        existed = self.paths.index.exists()
        loaded: VectorIndex | None = None
        if existed:
            try:
                loaded = VectorIndex.load(self.paths.index)
            except (ValueError, OSError):
                loaded = None
            if (
                loaded is not None
                and loaded.version == version
                and loaded.model_id == model_id
                and loaded.dim == dim
            ):
                return loaded
            if (
                self.is_postgres
                and loaded is not None
                and loaded.model_id == model_id
                and loaded.dim == dim
                and loaded.version < version
            ):  # an older copy of this catalog's index: catch it up rather than rebuild
                self._index = loaded
                self.sync_index()
                if len(loaded) == self._count_indexable():
                    return loaded
                self._index = None  # the file lied about its version: rebuild after all
        rebuilt = self.rebuild_index(dim, model_id, version)
        # an index written for another model is expected after a model change, not damage
        switched = loaded is not None and loaded.model_id != model_id
        self.index_repaired = not switched and (existed or len(rebuilt) > 0)
        return rebuilt

    def rebuild_index(self, dim: int, model_id: str | None, version: int) -> VectorIndex:
        """Rebuild the index from SQLite's embedding blobs and write it to disk."""
        index = VectorIndex(dim, model_id, version)
        ids: list[int] = []
        vectors: list[np.ndarray] = []
        with self.sessions() as s:
            # yield_per streams the rows (a server-side cursor on PostgreSQL): only one
            # batch of blobs is ever held besides the index itself
            rows = s.execute(self._indexable().execution_options(yield_per=INDEX_BATCH_ROWS))
            for track_id, blob in rows:
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.shape == (dim,):
                    ids.append(track_id)
                    vectors.append(vector)
                if len(ids) >= INDEX_BATCH_ROWS:
                    index.upsert(np.array(ids), np.stack(vectors))
                    ids, vectors = [], []
        if ids:
            index.upsert(np.array(ids), np.stack(vectors))
        index.save(self.paths.index)
        return index

    def sync_index(self) -> bool:
        """Catch the index in memory up with the database's commits since its version.

        Every change to a track's place in the index stamps the row's
        ``embedding_version`` with the index version it committed at (analysed,
        failed, missing, restored), so the changes since version ``v`` are the rows
        stamped above ``v``: each is put in or taken out as it is now. The database's
        version is read first, so a commit landing meanwhile is applied now and again
        next time (harmlessly). A change of model rebuilds instead. Returns True if
        anything was read.
        """
        index = self.index()
        db_version, model_id = self.index_version(), self.active_model_id
        if model_id != index.model_id:
            self._index = None
            self.index()
            return True
        if db_version == index.version:
            return False
        changed = select(Track.id, Track.status, Track.model_id, Track.embedding).where(
            Track.embedding_version > index.version
        )
        put_ids, put, gone = [], [], []
        with self.sessions() as s:
            for track_id, status, row_model, blob in s.execute(
                changed.execution_options(yield_per=INDEX_BATCH_ROWS)
            ):
                vector = None if blob is None else np.frombuffer(blob, dtype=np.float32)
                if (
                    status == TrackStatus.OK
                    and row_model == model_id
                    and vector is not None
                    and vector.shape == (index.dim,)
                ):
                    put_ids.append(track_id)
                    put.append(vector)
                else:
                    gone.append(track_id)
        if gone:
            index.remove(np.array(gone))
        if put_ids:
            index.upsert(np.array(put_ids), np.stack(put))
        index.version = max(db_version, index.version)
        return True

    def save_index(self) -> None:
        if self._index is not None:
            self._index.save(self.paths.index)

    def _count_indexable(self) -> int:
        with self.sessions() as s:
            query = select(func.count()).select_from(self._indexable().subquery())
            return int(s.scalar(query) or 0)

    def index_health(self) -> dict:
        """How the index file on disk compares with SQLite (without repairing it)."""
        with self.sessions() as s:
            expected = s.scalar(select(func.count()).select_from(self._indexable().subquery()))
        health: dict = {"expected_vectors": int(expected or 0), "db_version": self.index_version()}
        try:
            on_disk = VectorIndex.load(self.paths.index)
        except FileNotFoundError:
            return {**health, "file": "absent", "consistent": expected == 0}
        except (ValueError, OSError) as exc:
            return {**health, "file": f"unreadable: {exc}", "consistent": False}
        consistent = (
            on_disk.version == health["db_version"]
            and on_disk.model_id == self.active_model_id
            and len(on_disk) == health["expected_vectors"]
        )
        return {
            **health,
            "file": str(self.paths.index),
            "file_version": on_disk.version,
            "file_vectors": len(on_disk),
            "consistent": consistent,
        }

    # -- lookups used by the scanner -----------------------------------------------------

    def track_by_path(self, path: str) -> Track | None:
        with self.sessions() as s:
            return s.scalar(select(Track).where(Track.path == path))

    def paths_of(self, track_ids: Iterable[int]) -> dict[int, str]:
        """The current path of each of these rows (read now, not from any plan)."""
        ids = list(track_ids)
        if not ids:
            return {}
        with self.sessions() as s:
            return dict(s.execute(select(Track.id, Track.path).where(Track.id.in_(ids))).all())

    def tracks_by_hash(self, content_hash: str) -> list[Track]:
        with self.sessions() as s:
            return list(s.scalars(select(Track).where(Track.content_hash == content_hash)))

    def file_states(self) -> list[FileState]:
        """The columns the scanner compares with the disk, for every track (no blobs)."""
        columns = (
            Track.id, Track.path, Track.size, Track.mtime_ns,
            Track.content_hash, Track.status, Track.model_id,
            Track.embedding.is_not(None),
        )  # fmt: skip
        with self.sessions() as s:
            return [FileState(*row[:-1], bool(row[-1])) for row in s.execute(select(*columns))]

    # -- writes -----------------------------------------------------------------------

    @staticmethod
    def _upsert_track(session: Session, facts: FileFacts, track_id: int | None) -> Track:
        track = session.get(Track, track_id) if track_id else None
        if track is None:
            track = session.scalar(select(Track).where(Track.path == facts.path))
        now = _now()
        if track is None:
            track = Track(path=facts.path, added_at=now, status=TrackStatus.FAILED)
            session.add(track)
        track.path = facts.path
        track.size = facts.size
        track.mtime_ns = facts.mtime_ns
        track.content_hash = facts.content_hash
        track.format = facts.format
        track.updated_at = now
        return track

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

    def _apply_tags(self, track: Track, tags: Tags | None, audio: AudioFacts | None) -> None:
        if tags is not None:
            track.title = tags.title
            track.artist = tags.artist
            track.album = tags.album
            track.track_number = tags.track_number
            track.duration_s = tags.duration_s
            track.album_artist = getattr(tags, "album_artist", None)
            track.mbid = getattr(tags, "mbid", None)
            track.isrc = getattr(tags, "isrc", None)
            if tags.genres is not None:
                apply_genre_tags(track, tags.genres, self.genre_mapping())
        if audio is not None:
            track.duration_s = audio.duration_s
            track.sample_rate = audio.sample_rate
            track.channels = audio.channels

    def _apply_explanation(self, track: Track, explanation: Explanation | None) -> None:
        e = explanation
        # relative to the data directory, so a copied or moved one keeps its heatmaps
        track.heatmap_path = (
            stored_path(self.paths.root, e.heatmap_path) if e and e.heatmap_path else None
        )
        track.heatmap_genre = e.genre if e else None
        track.heatmap_start_s = e.start_s if e else None
        track.heatmap_end_s = e.end_s if e else None
        track.focus_low = e.focus["low"] if e else None
        track.focus_mid = e.focus["mid"] if e else None
        track.focus_high = e.focus["high"] if e else None

    def record_analysis(
        self,
        facts: FileFacts,
        tags: Tags,
        audio: AudioFacts,
        analysis: Analysis,
        track_id: int | None = None,
    ) -> int:
        """Store one analysed track in a single transaction and update the index."""
        embedding = np.ascontiguousarray(analysis.embedding, dtype=np.float32)
        self.index()  # load (or repair) before this transaction moves the version on
        with self.sessions.begin() as s:
            track = self._upsert_track(s, facts, track_id)
            self._apply_tags(track, tags, audio)
            track.status = TrackStatus.OK
            track.error = None
            track.warning = analysis.warning
            track.model_id = analysis.model_id
            track.genre = analysis.genre
            track.confidence = analysis.confidence
            track.n_segments = int(len(analysis.segment_probabilities))
            track.embedding = embedding.tobytes()
            self._apply_explanation(track, analysis.explanation)
            track.overview = analysis.overview
            track.analysed_at = _now()
            s.flush()
            tid = track.id
            s.execute(delete(TrackGenre).where(TrackGenre.track_id == tid))
            s.execute(delete(Segment).where(Segment.track_id == tid))
            s.execute(
                insert(TrackGenre),
                [
                    {"track_id": tid, "genre": g, "probability": float(p)}
                    for g, p in zip(analysis.genres, analysis.probabilities, strict=True)
                ],
            )
            seg_probs = np.asarray(analysis.segment_probabilities, dtype=np.float32)
            seg_embs = analysis.segment_embeddings
            if len(seg_probs):
                best = seg_probs.argmax(axis=1)
                step = analysis.segment_seconds
                starts = analysis.segment_starts
                if starts is None:
                    starts = np.arange(len(seg_probs)) * step
                s.execute(
                    insert(Segment),
                    [
                        {
                            "track_id": tid,
                            "idx": i,
                            "start_s": float(starts[i]),
                            "end_s": float(starts[i]) + step,
                            "genre": analysis.genres[int(best[i])],
                            "confidence": float(row[best[i]]),
                            "probabilities": row.tobytes(),
                            "embedding": None if seg_embs is None else seg_embs[i].tobytes(),
                        }
                        for i, row in enumerate(seg_probs)
                    ],
                )
            indexed = analysis.model_id == self.active_model_id
            track.embedding_version = self._bump_version(s) if indexed else None
            version = track.embedding_version
        if indexed:
            self._advance_index(
                version, lambda index: index.upsert(np.array([tid]), embedding[None, :])
            )
        return tid

    def record_failure(
        self,
        facts: FileFacts,
        reason: str,
        tags: Tags | None = None,
        audio: AudioFacts | None = None,
        track_id: int | None = None,
    ) -> int:
        """Store why a file could not be analysed; it is not retried until it changes."""
        self.index()
        with self.sessions.begin() as s:
            track = self._upsert_track(s, facts, track_id)
            self._apply_tags(track, tags, audio)
            was_indexed = track.status == TrackStatus.OK
            track.status = TrackStatus.FAILED
            track.error = reason
            track.warning = None
            track.genre = None
            track.confidence = None
            track.n_segments = None
            track.embedding = None
            track.embedding_version = None
            self._apply_explanation(track, None)
            track.analysed_at = _now()
            s.flush()
            tid = track.id
            s.execute(delete(TrackGenre).where(TrackGenre.track_id == tid))
            s.execute(delete(Segment).where(Segment.track_id == tid))
            version = self._bump_version(s) if was_indexed else None
            track.embedding_version = version  # when it left the index (see sync_index)
        if version is not None:
            self._remove_from_index([tid], version)
        return tid

    def touch(self, track_id: int, facts: FileFacts) -> None:
        """Same content under a new mtime or path: keep the analysis, refresh file facts."""
        self.index()
        with self.sessions.begin() as s:
            was_missing = s.get(Track, track_id).status == TrackStatus.MISSING
            s.execute(
                update(Track)
                .where(Track.id == track_id)
                .values(
                    path=facts.path,
                    size=facts.size,
                    mtime_ns=facts.mtime_ns,
                    content_hash=facts.content_hash,
                    updated_at=_now(),
                )
            )
            if was_missing:
                self._restore(s, track_id)

    def _restore(self, session: Session, track_id: int) -> None:
        """A missing track is back (same content): it is analysed again if it had been."""
        track = session.get(Track, track_id)
        track.status = TrackStatus.OK if track.embedding is not None else TrackStatus.FAILED
        if track.status == TrackStatus.OK and track.error is None:
            version = self._bump_version(session)
            track.embedding_version = version
            session.flush()
            if track.model_id == self.active_model_id:
                vector = np.frombuffer(track.embedding, dtype=np.float32)
                self._advance_index(
                    version, lambda index: index.upsert(np.array([track_id]), vector[None, :])
                )

    def mark_missing(self, track_ids: Iterable[int]) -> int:
        """Files that disappeared: keep their rows (a move may bring them back), unindex."""
        ids = list(track_ids)
        if not ids:
            return 0
        self.index()
        with self.sessions.begin() as s:
            version = self._bump_version(s)
            s.execute(
                update(Track)
                .where(Track.id.in_(ids))
                .values(status=TrackStatus.MISSING, updated_at=_now(), embedding_version=version)
            )
        self._remove_from_index(ids, version)
        return len(ids)

    def _remove_from_index(self, ids: list[int], version: int) -> None:
        self._advance_index(version, lambda index: index.remove(np.array(ids)))

    def _advance_index(self, version: int, change) -> None:
        """Apply one committed change (at ``version``) to the index in memory.

        Only when the index stood at ``version - 1``: then this change is all that
        happened since. Otherwise another process committed in between (PostgreSQL,
        concurrent ingests) and the index catches up from the database instead, so
        its version never claims a commit it lacks.
        """
        index = self.index()
        if index.version == version - 1:
            change(index)
            index.version = version
        else:
            self.sync_index()
