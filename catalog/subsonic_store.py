"""What Subsonic clients write: playlists, stars and plays (scrobbles).

Playlists hold track ids (which survive moves and re-scans); a track that leaves
the catalog leaves its playlists with it (ON DELETE CASCADE). Stars are kept by the
client-facing id (``tr-``, ``al-``, ``ar-``), since albums and artists are derived
from tags and have no rows of their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import bindparam, delete, func, or_, select

from catalog.clock import utc_now
from catalog.schema import Play, Playlist, PlaylistEntry, Star, SubsonicUser, Track
from catalog.store import Catalog

MAX_PLAYLIST = 10_000


class PlaylistNotFound(LookupError):
    pass


class NotOwner(PermissionError):
    pass


def _known_tracks(session, ids: Iterable[int]) -> list[int]:
    ids = list(ids)
    found = set(session.scalars(select(Track.id).where(Track.id.in_(set(ids)))))
    missing = [i for i in ids if i not in found]
    if missing:
        raise LookupError(f"no track with id {missing[0]}")
    return ids


def _playlist_dict(session, row: Playlist, with_entries: bool) -> dict:
    entries = list(
        session.scalars(
            select(PlaylistEntry.track_id)
            .where(PlaylistEntry.playlist_id == row.id)
            .order_by(PlaylistEntry.position)
        )
    )
    owner = session.scalar(select(SubsonicUser.name).where(SubsonicUser.id == row.owner_id))
    data = {
        "id": row.id, "name": row.name, "comment": row.comment, "public": bool(row.public),
        "owner": owner, "owner_id": row.owner_id, "created": row.created_at,
        "changed": row.changed_at, "track_count": len(entries),
    }  # fmt: skip
    if with_entries:
        data["track_ids"] = entries
    return data


def _write_entries(session, playlist_id: int, track_ids: list[int]) -> None:
    session.execute(delete(PlaylistEntry).where(PlaylistEntry.playlist_id == playlist_id))
    session.add_all(
        PlaylistEntry(playlist_id=playlist_id, position=i, track_id=t)
        for i, t in enumerate(track_ids[:MAX_PLAYLIST])
    )


def create_playlist(catalog: Catalog, owner_id: int, name: str, track_ids: list[int]) -> dict:
    now = utc_now()
    with catalog.sessions.begin() as s:
        ids = _known_tracks(s, track_ids)
        row = Playlist(owner_id=owner_id, name=name, public=False, created_at=now, changed_at=now)
        s.add(row)
        s.flush()
        _write_entries(s, row.id, ids)
        s.flush()
        return _playlist_dict(s, row, True)


def replace_playlist(catalog: Catalog, user_id: int, playlist_id: int, track_ids: list[int]):
    """``createPlaylist`` with a ``playlistId``: the songs replace the playlist's."""
    with catalog.sessions.begin() as s:
        row = _owned(s, user_id, playlist_id)
        _write_entries(s, row.id, _known_tracks(s, track_ids))
        row.changed_at = utc_now()
        s.flush()
        return _playlist_dict(s, row, True)


def _owned(session, user_id: int, playlist_id: int) -> Playlist:
    row = session.get(Playlist, playlist_id)
    if row is None:
        raise PlaylistNotFound(f"no playlist with id {playlist_id}")
    if row.owner_id != user_id:
        raise NotOwner(f"playlist {playlist_id} belongs to another user")
    return row


def update_playlist(
    catalog: Catalog,
    user_id: int,
    playlist_id: int,
    name: str | None = None,
    comment: str | None = None,
    public: bool | None = None,
    add: list[int] = (),
    remove_positions: list[int] = (),
) -> dict:
    """Rename, describe, share, append songs, remove songs by (0-based) position."""
    with catalog.sessions.begin() as s:
        row = _owned(s, user_id, playlist_id)
        if name is not None:
            row.name = name
        if comment is not None:
            row.comment = comment
        if public is not None:
            row.public = public
        current = list(
            s.scalars(
                select(PlaylistEntry.track_id)
                .where(PlaylistEntry.playlist_id == row.id)
                .order_by(PlaylistEntry.position)
            )
        )
        drop = set(remove_positions)
        kept = [t for i, t in enumerate(current) if i not in drop]
        _write_entries(s, row.id, kept + _known_tracks(s, add))
        row.changed_at = utc_now()
        s.flush()
        return _playlist_dict(s, row, True)


def delete_playlist(catalog: Catalog, user_id: int, playlist_id: int) -> None:
    with catalog.sessions.begin() as s:
        s.delete(_owned(s, user_id, playlist_id))


def playlists(catalog: Catalog, user_id: int) -> list[dict]:
    """The user's playlists and the public ones of others."""
    with catalog.sessions() as s:
        rows = s.scalars(
            select(Playlist)
            .where(or_(Playlist.owner_id == user_id, Playlist.public.is_(True)))
            .order_by(Playlist.name, Playlist.id)
        )
        return [_playlist_dict(s, r, False) for r in rows]


def playlist(catalog: Catalog, user_id: int, playlist_id: int) -> dict:
    with catalog.sessions() as s:
        row = s.get(Playlist, playlist_id)
        if row is None or (row.owner_id != user_id and not row.public):
            raise PlaylistNotFound(f"no playlist with id {playlist_id}")
        return _playlist_dict(s, row, True)


# -- stars and plays ----------------------------------------------------------------------


def star(catalog: Catalog, user_id: int, item_ids: Iterable[str]) -> None:
    now = utc_now()
    with catalog.sessions.begin() as s:
        for item in dict.fromkeys(item_ids):
            if s.get(Star, (user_id, item)) is None:
                s.add(Star(user_id=user_id, item_id=item, starred_at=now))


def unstar(catalog: Catalog, user_id: int, item_ids: Iterable[str]) -> None:
    with catalog.sessions.begin() as s:
        s.execute(delete(Star).where(Star.user_id == user_id, Star.item_id.in_(set(item_ids))))


_STARS = select(Star.item_id, Star.starred_at).where(Star.user_id == bindparam("user_id"))


def stars(catalog: Catalog, user_id: int) -> dict[str, datetime]:
    """item id -> when it was starred (asked on most browses: one prepared SELECT)."""
    with catalog.engine.connect() as conn:
        return dict(conn.execute(_STARS, {"user_id": user_id}).all())


def record_play(
    catalog: Catalog, user_id: int, track_id: int, when: datetime | None, submission: bool
) -> None:
    with catalog.sessions.begin() as s:
        _known_tracks(s, [track_id])
        s.add(Play(user_id=user_id, track_id=track_id, played_at=when or utc_now(),
                   submission=submission))  # fmt: skip


def play_counts(
    catalog: Catalog, track_ids: list[int] | None = None
) -> dict[int, tuple[int, datetime]]:
    """track id -> (plays submitted, last played), over every user; only ``track_ids``
    when given (a page of songs reads its own plays through the index, not all of them)."""
    query = (
        select(Play.track_id, func.count(), func.max(Play.played_at))
        .where(Play.submission.is_(True))
        .group_by(Play.track_id)
    )
    with catalog.engine.connect() as conn:
        if track_ids is None:
            return {t: (int(n), last) for t, n, last in conn.execute(query)}
        found = {}
        for start in range(0, len(track_ids), 900):  # under SQLite's bound-parameter limit
            chunk = query.where(Play.track_id.in_(track_ids[start : start + 900]))
            found.update({t: (int(n), last) for t, n, last in conn.execute(chunk)})
        return found
