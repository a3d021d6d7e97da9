"""Read-side questions the CLI, the API and the UI ask of a catalog.

Every function returns plain dicts and lists (JSON-ready), so the faces above can
print or serve them without knowing SQLAlchemy. The hot ones (a track's details, a
page of tracks, genre counts, neighbours) select plain columns on one pooled
connection instead of loading ORM objects: building Track, Segment and TrackGenre
instances (and their embedding blobs) was most of the cost of a request.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, Select, Text, bindparam, case, func, or_, select
from sqlalchemy.exc import OperationalError

from catalog.errors import TrackNotFound
from catalog.explanations import band_focus_of
from catalog.genre_names import canonical_name
from catalog.genre_store import UNCERTAIN
from catalog.genre_views import genre_views, library_state
from catalog.schema import (
    LibraryPrediction,
    Segment,
    StemSet,
    StemStatus,
    Track,
    TrackGenre,
    TrackStatus,
)  # fmt: skip
from catalog.stems import latest_stems
from catalog.store import Catalog
from embeddings.bands import band_focus_sentence

SUMMARY_COLUMNS = (
    Track.id, Track.path, Track.title, Track.artist, Track.album, Track.track_number,
    Track.duration_s, Track.status, Track.genre, Track.confidence, Track.error, Track.warning,
)  # fmt: skip
# What track_details reads of the track row: everything but the embedding blob.
DETAIL_COLUMNS = (
    *SUMMARY_COLUMNS, Track.size, Track.mtime_ns, Track.content_hash, Track.format,
    Track.sample_rate, Track.channels, Track.model_id, Track.n_segments, Track.analysed_at,
    Track.added_at, Track.heatmap_path, Track.heatmap_genre, Track.heatmap_start_s,
    Track.heatmap_end_s, Track.focus_low, Track.focus_mid, Track.focus_high,
)  # fmt: skip


SUMMARY_KEYS = tuple(column.key for column in SUMMARY_COLUMNS)

# -- reads with a time limit -----------------------------------------------------------------

_DEADLINE: ContextVar[float | None] = ContextVar("sonic_read_deadline", default=None)
PROGRESS_STEPS = 1_000  # SQLite VM instructions between deadline checks


class ReadTooSlow(Exception):
    """A read under :func:`time_limit` ran past its deadline and was stopped."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Stop the SQL of the reads below (in this context) once ``seconds`` have passed.

    For callers that must not wait on a scan (the service's event loop): the read
    raises :class:`ReadTooSlow` and can be redone where waiting is fine. Reads that
    finish in time are untouched; only the hot reads of this module are limited.
    """
    token = _DEADLINE.set(time.perf_counter() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


# PostgreSQL: a hot read with no deadline runs in autocommit. In a transaction it
# costs three round trips to the server (BEGIN, the query, the ROLLBACK that returns
# the connection to the pool), in autocommit one; each waits for the server process
# to be scheduled, which on a loaded machine is most of a `similar` call (see
# docs/benchmarks.md, "PostgreSQL catalog"). Nothing is lost: at PostgreSQL's READ
# COMMITTED every statement takes its own snapshot inside a transaction as well.
# bench/scale_catalog.py --similar-only turns it off to time the old way beside it.
READ_AUTOCOMMIT = True


@contextmanager
def _reading(catalog: Catalog) -> Iterator[Connection]:
    """A pooled connection for a read; SQLite interrupts it at the context's deadline."""
    deadline = _DEADLINE.get()
    with catalog.engine.connect() as conn:
        if deadline is None:
            if READ_AUTOCOMMIT and catalog.is_postgres:
                conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn
            return
        if catalog.is_postgres:
            with _postgres_time_limit(conn, deadline):
                yield conn
            return
        raw = conn.connection.dbapi_connection
        raw.set_progress_handler(lambda: time.perf_counter() > deadline, PROGRESS_STEPS)
        try:
            yield conn
        except OperationalError as exc:
            if "interrupted" in str(exc.orig):
                raise ReadTooSlow(f"a read ran past its time limit: {exc.statement}") from None
            raise
        finally:
            raw.set_progress_handler(None, 0)


@contextmanager
def _postgres_time_limit(conn: Connection, deadline: float) -> Iterator[None]:
    """PostgreSQL's own ``statement_timeout`` for the time left, for this transaction only."""
    left_ms = max(1, int((deadline - time.perf_counter()) * 1000))
    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {left_ms}")
    try:
        yield
    except OperationalError as exc:
        if "statement timeout" in str(exc.orig):
            raise ReadTooSlow(f"a read ran past its time limit: {exc.statement}") from None
        raise
    finally:
        if not conn.invalidated:
            conn.rollback()  # ends the SET LOCAL (and a transaction a timeout aborted)


def summary_of_row(row) -> dict:
    """``track_summary`` of a row that starts with ``SUMMARY_COLUMNS`` (a plain zip)."""
    return dict(zip(SUMMARY_KEYS, row, strict=False))


def track_summary(track) -> dict:
    """The short form of a track (a ``Track`` or a row of ``SUMMARY_COLUMNS``)."""
    return {
        "id": track.id,
        "path": track.path,
        "title": track.title,
        "artist": track.artist,
        "album": track.album,
        "track_number": track.track_number,
        "duration_s": track.duration_s,
        "status": track.status,
        "genre": track.genre,
        "confidence": track.confidence,
        "error": track.error,  # why a failed track failed: listings of failures need it
        "warning": track.warning,
    }


def resolve_track(catalog: Catalog, ref: str | int) -> int:
    """A track id from an id or a file path (relative paths are resolved)."""
    with catalog.sessions() as s:
        text = str(ref)
        if text.isdigit() and s.get(Track, int(text)) is not None:
            return int(text)
        path = str(Path(text).expanduser().absolute())
        track_id = s.scalar(select(Track.id).where(Track.path.in_({text, path})))
        if track_id is None:
            raise TrackNotFound(f"no track with id or path {text!r} in the catalog")
        return int(track_id)


# Hot statements are built once: a statement object reused across calls skips
# SQLAlchemy's cache-key walk over it and the re-mapping of its result columns onto
# the cached compilation, which together cost more than SQLite's part of the query.
_GENRE_COUNTS = (
    select(Track.genre, func.count(), func.avg(Track.confidence))
    .where(Track.status == TrackStatus.OK, Track.model_id == bindparam("model_id"))
    .group_by(Track.genre)
    .order_by(func.count().desc(), Track.genre)
)


def genre_counts(catalog: Catalog) -> list[dict]:
    """Tracks per predicted genre, most common first (analysed, present tracks only).

    With a library genre model, its genres (and "uncertain" for those it will not
    name), as ``--genre`` browses them; else the shipped head's.
    """
    state = library_state(catalog)
    if state is not None:
        return _library_genre_counts(catalog, state)
    with _reading(catalog) as conn:
        rows = conn.execute(_GENRE_COUNTS, {"model_id": catalog.active_model_id}).all()
    return [{"genre": g, "tracks": int(n), "mean_confidence": float(c or 0)} for g, n, c in rows]


def _library_genre_counts(catalog: Catalog, state: dict) -> list[dict]:
    sure = LibraryPrediction.confidence >= bindparam("threshold")
    name = case((sure, LibraryPrediction.genre), else_=UNCERTAIN)
    query = (
        select(name, func.count(), func.avg(LibraryPrediction.confidence))
        .join(Track, Track.id == LibraryPrediction.track_id)
        .where(LibraryPrediction.model_version == bindparam("version"),
               Track.status == TrackStatus.OK)
        .group_by(name)
        .order_by(func.count().desc(), name)
    )  # fmt: skip
    with _reading(catalog) as conn:
        rows = conn.execute(query, state).all()
    return [{"genre": g, "tracks": int(n), "mean_confidence": float(c or 0)} for g, n, c in rows]


def _path_matches(postgres: bool):
    """``path ILIKE :path_like`` on either backend.

    On PostgreSQL paths are ``bytea`` (lossless for names that are not UTF-8), which
    ILIKE does not take: the bytes are read as Latin-1, which maps every byte to one
    character and never fails, and the pattern is the query's UTF-8 bytes read the
    same way, so any name matches byte for byte (case-insensitively for ASCII).
    """
    if postgres:
        return func.convert_from(Track.path, "LATIN1").ilike(bindparam("path_like", type_=Text))
    return Track.path.ilike(bindparam("path_like", type_=Text))


def _path_pattern(text: str | None, postgres: bool) -> str:
    like = f"%{text}%"
    return like.encode("utf-8", "surrogateescape").decode("latin-1") if postgres else like


@functools.cache
def _browse_statements(
    genre: bool, status: bool, artist: bool, album: bool, text: bool, library: str = "",
    postgres: bool = False,
) -> tuple[Select, Select]:
    """(count, page) statements for one combination of filters, built once (see above).

    ``library``: "sure" browses a genre by the library model's confident predictions,
    "uncertain" the tracks it abstains on; "" by the shipped head's genre.
    """
    where = []
    if library:
        where.append(LibraryPrediction.model_version == bindparam("version"))
        if library == "sure":
            where.append(LibraryPrediction.genre == bindparam("genre"))
            where.append(LibraryPrediction.confidence >= bindparam("threshold"))
        else:
            where.append(LibraryPrediction.confidence < bindparam("threshold"))
    elif genre:
        where.append(Track.genre == bindparam("genre"))
    if status:
        where.append(Track.status == bindparam("status"))
    if artist:
        where.append(Track.artist == bindparam("artist"))
    if album:
        where.append(Track.album == bindparam("album"))
    if text:
        columns = [c.ilike(bindparam("like")) for c in (Track.title, Track.artist, Track.album)]
        where.append(or_(*columns, _path_matches(postgres)))  # the path: folder names too
    order = (Track.confidence.desc(), Track.id) if genre else (Track.path,)
    count = select(func.count()).select_from(Track)
    page = select(*SUMMARY_COLUMNS)
    if library:
        joined = LibraryPrediction.track_id == Track.id
        count, page = count.join(LibraryPrediction, joined), page.join(LibraryPrediction, joined)
        order = (LibraryPrediction.confidence.desc(), Track.id)
    count = count.where(*where)
    page = (
        page.where(*where)
        .order_by(*order)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    return count, page


def browse(
    catalog: Catalog,
    genre: str | None = None,
    status: str | None = None,
    artist: str | None = None,
    album: str | None = None,
    text: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict:
    """A page of tracks matching the filters, most confident first within a genre.

    With a library genre model fitted, ``genre`` is a genre of the library's own
    vocabulary (any spelling: "Hip Hop" finds "hip-hop") and finds the tracks the
    model confidently predicts as it; ``genre="uncertain"`` finds those it abstains
    on. Without one, the shipped head's genre, as before.
    """
    state = library_state(catalog) if genre else None
    library = ""
    if state is not None:
        library = "uncertain" if genre == UNCERTAIN else "sure"
        genre = canonical_name(genre, catalog.genre_mapping()) or genre
    count, page = _browse_statements(
        bool(genre), bool(status), bool(artist), bool(album), bool(text), library,
        catalog.is_postgres,
    )
    params = {
        "genre": genre, "status": status, "artist": artist, "album": album,
        "like": f"%{text}%", "path_like": _path_pattern(text, catalog.is_postgres),
        "limit": limit, "offset": offset,
        "version": state and state["version"], "threshold": state and state["threshold"],
    }  # fmt: skip
    with _reading(catalog) as conn:
        total = conn.scalar(count, params)
        rows = conn.execute(page, params).all()
    tracks = [summary_of_row(t) for t in rows]
    views = genre_views(catalog, [t["id"] for t in tracks])
    for t in tracks:
        t["genre_views"] = views.get(t["id"])
    return {
        "total": int(total or 0),
        "limit": limit,
        "offset": offset,
        "genre_model": "library" if state is not None else "shipped",
        "tracks": tracks,
    }


_SEED = select(Track.status, Track.error, Track.album).where(Track.id == bindparam("track_id"))
_SUMMARIES = select(*SUMMARY_COLUMNS).where(Track.id.in_(bindparam("ids", expanding=True)))


def similar(
    catalog: Catalog,
    track_id: int,
    k: int = 10,
    genre: str | None = None,
    exclude_same_album: bool = False,
) -> list[dict]:
    """The k nearest tracks by cosine similarity, excluding the query, best first.

    ``genre`` keeps only neighbours predicted as that genre; ``exclude_same_album``
    drops neighbours from the query track's album (when it has one).
    """
    index = catalog.index()
    vector = index.vector(track_id)
    album = None
    if vector is None or exclude_same_album:
        with _reading(catalog) as conn:
            track = conn.execute(_SEED, {"track_id": track_id}).first()
        if vector is None:
            if track is None:
                raise TrackNotFound(f"no track with id {track_id}")
            raise LookupError(
                f"track {track_id} has no embedding in the index (status: {track.status}"
                + (f", {track.error}" if track.error else "")
                + ")"
            )
        album = track.album if track is not None else None
    return similar_to_vector(catalog, vector, k, exclude={track_id}, genre=genre, album=album)


def similar_to_vector(
    catalog: Catalog,
    vector: np.ndarray,
    k: int = 10,
    exclude: set[int] | None = None,
    genre: str | None = None,
    album: str | None = None,
) -> list[dict]:
    """Nearest catalogued tracks to an arbitrary embedding (e.g. an uploaded clip).

    With ``genre`` only tracks of that predicted genre count; with ``album`` tracks
    from that album are left out. Filtered searches ask the index for more
    candidates, widening until k pass the filters or the index is exhausted.
    """
    exclude = exclude or set()
    index = catalog.index()
    filtered = genre is not None or album is not None
    fetch = k + len(exclude) if not filtered else 4 * k + len(exclude)
    while True:
        hits = [(i, sc) for i, sc in index.search(vector, fetch) if i not in exclude]
        with _reading(catalog) as conn:  # plain columns: no ORM objects, no blobs
            found = conn.execute(_SUMMARIES, {"ids": [i for i, _ in hits]})
            tracks = {t.id: t for t in found}
        rows = [
            {**summary_of_row(tracks[i]), "score": score}
            for i, score in hits
            if i in tracks
            and (genre is None or tracks[i].genre == genre)
            and (album is None or tracks[i].album != album)
        ]
        if len(rows) >= k or fetch >= len(index) or not filtered:
            return rows[:k]
        fetch = min(len(index), fetch * 4)


def track_summary_from_details(details: dict) -> dict:
    keys = ("id", "path", "title", "artist", "album", "track_number", "duration_s",
            "status", "genre", "confidence")  # fmt: skip
    return {key: details.get(key) for key in keys}


def embeddings(catalog: Catalog) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of every indexed track, L2-normalised 512-dim float32."""
    return catalog.index().vectors()


_DETAILS = select(*DETAIL_COLUMNS).where(Track.id == bindparam("track_id"))
_PROBABILITIES = (
    select(TrackGenre.genre, TrackGenre.probability)
    .where(TrackGenre.track_id == bindparam("track_id"))
    .order_by(TrackGenre.probability.desc())  # the order of the Track.genres relationship
)
_TIMELINE = (
    select(
        Segment.idx,
        Segment.start_s,
        Segment.end_s,
        Segment.genre,
        Segment.confidence,
        Segment.probabilities,
    )  # fmt: skip
    .where(Segment.track_id == bindparam("track_id"))
    .order_by(Segment.idx)
)
_ANY_STEMS = (
    select(StemSet.id)
    .where(StemSet.content_hash == bindparam("content_hash"), StemSet.status == StemStatus.OK)
    .limit(1)
)


def track_details(catalog: Catalog, track_id: int) -> dict:
    """Everything the catalog holds for one track."""
    with _reading(catalog) as conn:
        track = conn.execute(_DETAILS, {"track_id": track_id}).first()
        if track is None:
            raise TrackNotFound(f"no track with id {track_id}")
        probabilities = conn.execute(_PROBABILITIES, {"track_id": track_id}).all()
        segments = conn.execute(_TIMELINE, {"track_id": track_id}).all()
        # Stems are rare: one indexed probe, and the full read only when a set exists.
        has_stems = track.content_hash and conn.scalar(
            _ANY_STEMS, {"content_hash": track.content_hash}
        )
    genres = catalog.model_genres(track.model_id)
    found = catalog.artefact_path(track.heatmap_path)  # in the data directory as it is now
    heatmap = str(found) if found is not None else None
    timeline = [
        {
            "index": idx,
            "start_s": start_s,
            "end_s": end_s,
            "genre": genre,
            "confidence": confidence,
            # tolist(): the same Python floats as float() of each float32, in one call
            "probabilities": dict(
                zip(genres, np.frombuffer(probs, dtype=np.float32).tolist(), strict=False)
            ),
        }
        for idx, start_s, end_s, genre, confidence, probs in segments
    ]
    return {
        **summary_of_row(track),
        "size": track.size,
        "mtime_ns": track.mtime_ns,
        "content_hash": track.content_hash,
        "format": track.format,
        "sample_rate": track.sample_rate,
        "channels": track.channels,
        "error": track.error,
        "warning": track.warning,
        "model_id": track.model_id,
        "n_segments": track.n_segments,
        "analysed_at": track.analysed_at.isoformat() if track.analysed_at else None,
        "added_at": track.added_at.isoformat() if track.added_at else None,
        "in_index": catalog.index().vector(track.id) is not None,
        "probabilities": dict(probabilities),
        "timeline": timeline,
        "explanation": _explanation(track, heatmap),
        "genre_views": genre_views(catalog, [track.id]).get(track.id),
        "artefacts": {
            "audio": track.path,
            "heatmap": heatmap,
            "stems": latest_stems(catalog, track.content_hash) if has_stems else {},
        },
    }


def waveform_overview(catalog: Catalog, track_id: int) -> np.ndarray | None:
    """The (2, n) min/max waveform overview stored at ingest, or None (older rows).

    A separate read: the blob is only wanted by a face that draws it.
    """
    with catalog.sessions() as s:
        blob = s.scalar(select(Track.overview).where(Track.id == track_id))
    if not blob:
        return None
    return np.frombuffer(blob, dtype=np.float16).astype(np.float32).reshape(2, -1)


def _explanation(track, heatmap: str | None) -> dict | None:
    """The stored explanation of a ``Track`` or a row of ``DETAIL_COLUMNS``.

    ``heatmap``: its PNG resolved against the current data directory.
    """
    focus = band_focus_of(track)
    if focus is None:
        return None
    return {
        "genre": track.heatmap_genre,
        "heatmap": heatmap,
        "window_s": [track.heatmap_start_s, track.heatmap_end_s],
        "band_focus": focus,
        "sentence": band_focus_sentence(focus),
    }
