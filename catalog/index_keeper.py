"""The FAISS index kept in step with the database: loaded, rebuilt, caught up, advanced.

Every change to what should be in the index is one database transaction that also
bumps ``index_version``; the index in memory is changed right after the commit
(:meth:`IndexKeeper._advance_index`) and written to disk now and then. If the
process dies between the two, the file on disk carries an older version, and the
next :meth:`IndexKeeper.index` call rebuilds it from the embeddings stored in the
database, which is always the truth.

On a shared PostgreSQL catalog a process whose index missed another's commits
catches up from the database (:meth:`IndexKeeper.sync_index`): every row that
entered or left the index is stamped with the version it committed at.

A mixin of :class:`catalog.store.Catalog`.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select

from catalog.ann import choose_kind
from catalog.index import VectorIndex, read_header
from catalog.meta_store import EMBEDDING_DIM, MetaStore
from catalog.schema import Track, TrackStatus

INDEX_BATCH_ROWS = 20_000  # rows per batch when the index is read from the database


class IndexKeeper(MetaStore):
    """The catalog's one ``VectorIndex`` and its agreement with the database."""

    _index: VectorIndex | None
    _index_file_stat: tuple[int, int, int] | None
    index_repaired: bool

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
        """Rebuild the index from the database's embedding blobs and write it to disk.

        A PostgreSQL catalog at IVF sizes (``catalog.ann.choose_kind``) that keeps IVF
        alone builds the IVF straight from the database (``catalog.index_builds``):
        filling the exact index first would hold every vector twice while the IVF
        is built, only to let the exact copy go afterwards. Everything else (SQLite,
        smaller catalogs) fills the exact index, as always.
        """
        if self.is_postgres and self.compact_ivf and self._ivf_due():
            from catalog.index_builds import ivf_index_from_database

            return ivf_index_from_database(self, dim, model_id, version, self.paths.index)
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

    def _ivf_due(self) -> bool:
        """Whether the indexable tracks are many enough for IVF (one count query)."""
        return choose_kind(self._count_indexable()) == "ivf"

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
        expected = self._count_indexable()
        health: dict = {"expected_vectors": expected, "db_version": self.index_version()}
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

    # -- one committed change ---------------------------------------------------------

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
