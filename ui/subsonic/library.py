"""What clients write or poll: playlists, scrobbles, stars, and the library scan."""

from __future__ import annotations

from datetime import UTC, datetime

from catalog import subsonic_store as store
from catalog.library_view import LibraryView, song_id
from ui.subsonic import entities as e
from ui.subsonic.context import Context, not_found, track_id_of
from ui.subsonic.envelope import GENERIC, NOT_AUTHORISED, SubsonicError
from ui.subsonic.registry import method


def _track_ids(ctx: Context, name: str) -> list[int]:
    ids = []
    view = ctx.view
    for ref in ctx.all(name):
        track = track_id_of(ref)
        if track is None or track not in view.songs:
            raise not_found(f"song {ref[:40]!r}")
        ids.append(track)
    return ids


def _playlist_id(ctx: Context, name: str) -> int:
    raw = ctx.required(name)
    if not raw.isdigit() or len(raw) > 18:
        raise not_found("playlist")
    return int(raw)


def _playlist(view: LibraryView, data: dict, ctx: Context, with_entries: bool) -> dict:
    entries = [view.songs[t] for t in data.get("track_ids", []) if t in view.songs]
    duration = sum(int(s.duration_s or 0) for s in entries) if with_entries else None
    out = {
        "id": str(data["id"]), "name": data["name"], "comment": data["comment"],
        "owner": data["owner"], "public": data["public"], "songCount": data["track_count"],
        "duration": duration, "created": data["created"], "changed": data["changed"],
    }  # fmt: skip
    if with_entries:
        starred = store.stars(ctx.catalog, ctx.user.id)
        out["entry"] = [e.child(view, s, starred) for s in entries]
    return out


def _guarded(fn, *args):
    try:
        return fn(*args)
    except store.PlaylistNotFound:
        raise not_found("playlist") from None
    except store.NotOwner as exc:
        raise SubsonicError(NOT_AUTHORISED, str(exc)) from None
    except LookupError as exc:
        raise SubsonicError(70, str(exc)) from None


@method("getPlaylists")
def get_playlists(ctx: Context) -> dict:
    other = ctx.get("username")
    if other and other != ctx.user.name and not ctx.user.admin:
        raise SubsonicError(NOT_AUTHORISED, "only an admin may list another user's playlists")
    rows = store.playlists(ctx.catalog, ctx.user.id)
    view = ctx.view
    return {"playlists": {"playlist": [_playlist(view, r, ctx, False) for r in rows]}}


@method("getPlaylist")
def get_playlist(ctx: Context) -> dict:
    data = _guarded(store.playlist, ctx.catalog, ctx.user.id, _playlist_id(ctx, "id"))
    return {"playlist": _playlist(ctx.view, data, ctx, True)}


@method("createPlaylist")
def create_playlist(ctx: Context) -> dict:
    songs = _track_ids(ctx, "songId")
    if ctx.get("playlistId"):
        pid = _playlist_id(ctx, "playlistId")
        data = _guarded(store.replace_playlist, ctx.catalog, ctx.user.id, pid, songs)
        if ctx.get("name"):
            data = _guarded(store.update_playlist, ctx.catalog, ctx.user.id, pid, ctx.get("name"))
    else:
        name = ctx.required("name")
        data = _guarded(store.create_playlist, ctx.catalog, ctx.user.id, name, songs)
    return {"playlist": _playlist(ctx.view, data, ctx, True)}


@method("updatePlaylist")
def update_playlist(ctx: Context) -> dict:
    pid = _playlist_id(ctx, "playlistId")
    remove = []
    for raw in ctx.all("songIndexToRemove"):
        if not raw.isdigit():
            raise SubsonicError(GENERIC, f"songIndexToRemove must be a number, not {raw[:20]!r}")
        remove.append(int(raw))
    _guarded(
        store.update_playlist, ctx.catalog, ctx.user.id, pid, ctx.get("name"),
        ctx.get("comment"), ctx.boolean("public"), _track_ids(ctx, "songIdToAdd"), remove,
    )  # fmt: skip
    return {}


@method("deletePlaylist")
def delete_playlist(ctx: Context) -> dict:
    _guarded(store.delete_playlist, ctx.catalog, ctx.user.id, _playlist_id(ctx, "id"))
    return {}


@method("scrobble")
def scrobble(ctx: Context) -> dict:
    ids = _track_ids(ctx, "id")
    if not ids:
        ctx.required("id")
    times = ctx.all("time")
    submission = ctx.boolean("submission", True)
    for n, track in enumerate(ids):
        when = None
        if n < len(times) and times[n].isdigit():
            when = datetime.fromtimestamp(int(times[n]) / 1000, UTC).replace(tzinfo=None)
        store.record_play(ctx.catalog, ctx.user.id, track, when, submission)
    return {}


def _star_items(ctx: Context) -> list[str]:
    view = ctx.view
    items = []
    for ref in ctx.all("id"):
        if view.song(ref) is None:
            raise not_found(f"song {ref[:40]!r}")
        items.append(song_id(view.song(ref).id))
    for ref in ctx.all("albumId"):
        if ref not in view.albums:
            raise not_found(f"album {ref[:40]!r}")
        items.append(ref)
    for ref in ctx.all("artistId"):
        if ref not in view.artists:
            raise not_found(f"artist {ref[:40]!r}")
        items.append(ref)
    if not items:
        ctx.required("id")
    return items


@method("star")
def star(ctx: Context) -> dict:
    store.star(ctx.catalog, ctx.user.id, _star_items(ctx))
    return {}


@method("unstar")
def unstar(ctx: Context) -> dict:
    store.unstar(ctx.catalog, ctx.user.id, _star_items(ctx))
    return {}


def _starred(ctx: Context) -> dict:
    view = ctx.view
    starred = store.stars(ctx.catalog, ctx.user.id)
    songs = [view.song(i) for i in starred if view.song(i) is not None]
    return {
        "artist": [e.artist(view.artists[i], starred) for i in starred if i in view.artists],
        "album": [e.album(view.albums[i], starred) for i in starred if i in view.albums],
        "song": [e.child(view, s, starred) for s in songs],
    }


@method("getStarred2")
def starred2(ctx: Context) -> dict:
    return {"starred2": _starred(ctx)}


@method("getStarred")
def starred(ctx: Context) -> dict:
    return {"starred": _starred(ctx)}


# -- scanning -----------------------------------------------------------------------------


@method("getScanStatus")
def scan_status(ctx: Context) -> dict:
    from ui.subsonic.scan import status

    return {"scanStatus": status(ctx.state, len(ctx.view.songs))}


@method("startScan", admin=True)
def start_scan(ctx: Context) -> dict:
    from ui.subsonic.scan import start, status

    start(ctx.state)
    return {"scanStatus": status(ctx.state, len(ctx.view.songs))}
