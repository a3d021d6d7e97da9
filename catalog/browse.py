"""Browsing: a page of tracks by genre, status, artist, album or text, and genre counts.

With a library genre model fitted (``sonic learn-genres``), a genre is one of the
library's own genres, browsed by that model's confident predictions, and
"uncertain" lists the tracks it will not name; without one, the shipped head's.
Statements are built once per combination of filters and reused.
"""

from __future__ import annotations

import functools

from sqlalchemy import Select, Text, bindparam, case, func, or_, select

from catalog.genre_names import canonical_name
from catalog.genre_store import UNCERTAIN
from catalog.genre_views import genre_views, library_state
from catalog.read_deadline import reading
from catalog.schema import LibraryPrediction, Track, TrackStatus
from catalog.store import Catalog
from catalog.track_summaries import SUMMARY_COLUMNS, summary_of_row

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
    with reading(catalog) as conn:
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
    with reading(catalog) as conn:
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
    with reading(catalog) as conn:
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
