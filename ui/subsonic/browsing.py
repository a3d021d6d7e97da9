"""Browsing by tags (ID3) and by folder, search, genres and random songs.

All of it reads the in-memory :class:`~catalog.library_view.LibraryView`; genres
are the catalog's (the library model's where ``sonic learn-genres`` fitted one,
never an "uncertain" guess; else the shipped head's).
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import datetime

from catalog import subsonic_store as store
from catalog.library_view import LibraryView
from ui.subsonic import entities as e
from ui.subsonic.context import Context, not_found
from ui.subsonic.envelope import GENERIC, SubsonicError
from ui.subsonic.registry import method

MAX_LIST = 500
IGNORED_ARTICLES = "The El La Los Las Le Les"


def _folder_filter(ctx: Context, view: LibraryView):
    """A predicate on songs for ``musicFolderId`` (None: every folder)."""
    raw = ctx.get("musicFolderId")
    if raw is None or raw == "":
        return None
    index = ctx.integer("musicFolderId", 0)
    if not 1 <= index <= len(view.roots):
        raise not_found(f"music folder {raw!r}")
    root = str(view.roots[index - 1]).rstrip("/") + "/"
    return lambda song: song.path.startswith(root)


@method("getMusicFolders")
def music_folders(ctx: Context) -> dict:
    folders = [{"id": i + 1, "name": r.name or str(r)} for i, r in enumerate(ctx.view.roots)]
    return {"musicFolders": {"musicFolder": folders}}


def _grouped(items, name_of) -> list[dict]:
    groups: dict[str, list] = defaultdict(list)
    for item in items:
        groups[e.index_letter(name_of(item))].append(item)
    return [{"name": letter, "items": groups[letter]} for letter in sorted(groups)]


@method("getArtists")
def artists(ctx: Context) -> dict:
    view = ctx.view
    keep = _folder_filter(ctx, view)
    starred = store.stars(ctx.catalog, ctx.user.id)
    chosen = [
        a for a in view.artists.values()
        if keep is None or any(keep(s) for al in a.albums for s in al.songs)
    ]  # fmt: skip
    chosen.sort(key=lambda a: a.name.casefold())
    index = [
        {"name": g["name"], "artist": [e.artist(a, starred) for a in g["items"]]}
        for g in _grouped(chosen, lambda a: a.name)
    ]
    return {"artists": {"ignoredArticles": IGNORED_ARTICLES, "index": index}}


@method("getArtist")
def artist(ctx: Context) -> dict:
    view = ctx.view
    found = view.artists.get(ctx.required("id"))
    if found is None:
        raise not_found("artist")
    starred = store.stars(ctx.catalog, ctx.user.id)
    return {"artist": e.artist(found, starred, [e.album(a, starred) for a in found.albums])}


def _songs(
    ctx: Context, view: LibraryView, songs, starred: dict[str, datetime] | None = None
) -> list[dict]:
    """Child entries for ``songs``; ``starred``: the user's stars, if already read."""
    songs = list(songs)
    if starred is None:
        starred = store.stars(ctx.catalog, ctx.user.id)
    plays = store.play_counts(ctx.catalog, [s.id for s in songs])
    return [e.child(view, s, starred, plays) for s in songs]


@method("getAlbum")
def album(ctx: Context) -> dict:
    view = ctx.view
    found = view.albums.get(ctx.required("id"))
    if found is None:
        raise not_found("album")
    starred = store.stars(ctx.catalog, ctx.user.id)
    return {"album": e.album(found, starred, _songs(ctx, view, found.songs, starred))}


@method("getSong")
def song(ctx: Context) -> dict:
    view = ctx.view
    found = view.song(ctx.required("id"))
    if found is None:
        raise not_found("song")
    return {"song": _songs(ctx, view, [found])[0]}


def _album_list(ctx: Context) -> list:
    view = ctx.view
    kind = ctx.required("type")
    size = ctx.integer("size", 10, 0, MAX_LIST)
    offset = ctx.integer("offset", 0, 0)
    keep = _folder_filter(ctx, view)
    albums = [a for a in view.albums.values() if keep is None or any(keep(s) for s in a.songs)]
    name = lambda a: (a.name.casefold(), a.artist.casefold())  # noqa: E731
    if kind == "random":
        albums = random.sample(albums, min(size, len(albums)))
        offset = 0
    elif kind == "newest":
        albums.sort(key=lambda a: a.created.timestamp() if a.created else 0, reverse=True)
    elif kind == "alphabeticalByName":
        albums.sort(key=name)
    elif kind == "alphabeticalByArtist":
        albums.sort(key=lambda a: (a.artist.casefold(), a.name.casefold()))
    elif kind == "byGenre":
        genre = ctx.required("genre")
        albums = sorted((a for a in albums if a.genre == genre), key=name)
    elif kind == "starred":
        starred = store.stars(ctx.catalog, ctx.user.id)
        albums = sorted((a for a in albums if a.id in starred), key=name)
    elif kind in ("frequent", "recent", "highest"):
        plays = store.play_counts(ctx.catalog)
        score = (
            (lambda a: max((plays[s.id][1] for s in a.songs if s.id in plays), default=None))
            if kind == "recent"
            else (lambda a: sum(plays[s.id][0] for s in a.songs if s.id in plays) or None)
        )
        scored = [(score(a), a) for a in albums]
        albums = [a for sc, a in sorted((p for p in scored if p[0] is not None),
                                        key=lambda p: p[0], reverse=True)]  # fmt: skip
    elif kind == "byYear":
        ctx.required("fromYear"), ctx.required("toYear")
        albums = []  # the catalog keeps no years
    else:
        raise SubsonicError(GENERIC, f"unknown album list type {kind!r}")
    return albums[offset : offset + size]


@method("getAlbumList2")
def album_list2(ctx: Context) -> dict:
    starred = store.stars(ctx.catalog, ctx.user.id)
    return {"albumList2": {"album": [e.album(a, starred) for a in _album_list(ctx)]}}


@method("getAlbumList")
def album_list(ctx: Context) -> dict:
    starred = store.stars(ctx.catalog, ctx.user.id)
    return {"albumList": {"album": [e.album(a, starred) for a in _album_list(ctx)]}}


@method("getRandomSongs")
def random_songs(ctx: Context) -> dict:
    view = ctx.view
    size = ctx.integer("size", 10, 0, MAX_LIST)
    genre = ctx.get("genre")
    keep = _folder_filter(ctx, view)
    pool = [s for s in view.songs.values()
            if (genre is None or s.genre == genre) and (keep is None or keep(s))]  # fmt: skip
    picked = random.sample(pool, min(size, len(pool)))
    return {"randomSongs": {"song": _songs(ctx, view, picked)}}


@method("getGenres")
def genres(ctx: Context) -> dict:
    view = ctx.view
    rows = [
        {"value": g, "songCount": n, "albumCount": view.genre_albums.get(g, 0)}
        for g, n in sorted(view.genres.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return {"genres": {"genre": rows}}


@method("getSongsByGenre")
def songs_by_genre(ctx: Context) -> dict:
    view = ctx.view
    genre = ctx.required("genre")
    count = ctx.integer("count", 10, 0, MAX_LIST)
    offset = ctx.integer("offset", 0, 0)
    keep = _folder_filter(ctx, view)
    songs = sorted(
        (s for s in view.songs.values() if s.genre == genre and (keep is None or keep(s))),
        key=lambda s: (-(s.confidence or 0), s.id),
    )
    return {"songsByGenre": {"song": _songs(ctx, view, songs[offset : offset + count])}}


def _search(ctx: Context) -> tuple[list, list, list]:
    view = ctx.view
    query = (ctx.get("query") or "").strip().strip('"').casefold()
    keep = _folder_filter(ctx, view)

    def hit(*texts: str) -> bool:
        return not query or any(query in (t or "").casefold() for t in texts)

    def page(items, prefix: str, default: int):
        count = ctx.integer(prefix + "Count", default, 0, MAX_LIST)
        offset = ctx.integer(prefix + "Offset", 0, 0)
        return items[offset : offset + count]

    songs = [s for s in view.songs.values()
             if hit(s.title, s.artist, s.album) and (keep is None or keep(s))]  # fmt: skip
    songs.sort(key=lambda s: (s.title.casefold(), s.id))
    albums = sorted((a for a in view.albums.values() if hit(a.name, a.artist)),
                    key=lambda a: a.name.casefold())  # fmt: skip
    artists_ = sorted((a for a in view.artists.values() if hit(a.name)),
                      key=lambda a: a.name.casefold())  # fmt: skip
    return page(artists_, "artist", 20), page(albums, "album", 20), page(songs, "song", 20)


@method("search3")
def search3(ctx: Context) -> dict:
    found_artists, found_albums, found_songs = _search(ctx)
    starred = store.stars(ctx.catalog, ctx.user.id)
    return {
        "searchResult3": {
            "artist": [e.artist(a, starred) for a in found_artists],
            "album": [e.album(a, starred) for a in found_albums],
            "song": _songs(ctx, ctx.view, found_songs),
        }
    }


@method("search2")
def search2(ctx: Context) -> dict:
    found_artists, found_albums, found_songs = _search(ctx)
    return {
        "searchResult2": {
            "artist": [{"id": a.id, "name": a.name} for a in found_artists],
            "album": [e.album(a) for a in found_albums],
            "song": _songs(ctx, ctx.view, found_songs),
        }
    }


# -- folders ------------------------------------------------------------------------------


@method("getIndexes")
def indexes(ctx: Context) -> dict:
    view = ctx.view
    raw = ctx.get("musicFolderId")
    wanted = ctx.integer("musicFolderId", 0) if raw else None
    tops = [f for f in view.folders.values() if f.parent is None
            and (wanted is None or f.root_index == wanted)]  # fmt: skip
    tops.sort(key=lambda f: f.name.casefold())
    index = [
        {"name": g["name"], "artist": [{"id": f.id, "name": f.name} for f in g["items"]]}
        for g in _grouped(tops, lambda f: f.name)
    ]
    loose = [s for s in view.songs.values() if s.dir_id.startswith("mf-")
             and (wanted is None or s.dir_id == f"mf-{wanted}")]  # fmt: skip
    return {
        "indexes": {
            "lastModified": 0,
            "ignoredArticles": IGNORED_ARTICLES,
            "index": index,
            "child": _songs(ctx, view, loose),
        }
    }


@method("getMusicDirectory")
def music_directory(ctx: Context) -> dict:
    view = ctx.view
    ref = ctx.required("id")
    if ref in view.folders:
        folder = view.folders[ref]
        children = [e.folder_child(view.folders[f]) for f in folder.folders]
        children += _songs(ctx, view, folder.songs)
        parent = folder.parent or f"mf-{folder.root_index}"
        return {"directory": {"id": folder.id, "parent": parent, "name": folder.name,
                              "child": children}}  # fmt: skip
    if ref.startswith("mf-") and ref[3:].isdigit() and 1 <= int(ref[3:]) <= len(view.roots):
        n = int(ref[3:])
        tops = sorted((f for f in view.folders.values() if f.parent is None and f.root_index == n),
                      key=lambda f: f.name.casefold())  # fmt: skip
        loose = [s for s in view.songs.values() if s.dir_id == ref]
        children = [e.folder_child(f) for f in tops] + _songs(ctx, view, loose)
        return {"directory": {"id": ref, "name": view.roots[n - 1].name, "child": children}}
    if ref in view.artists:  # clients that browse ID3 artists through folders
        a = view.artists[ref]
        children = [{"id": al.id, "parent": a.id, "isDir": True, "title": al.name,
                     "album": al.name, "artist": a.name, "coverArt": al.id}
                    for al in a.albums]  # fmt: skip
        return {"directory": {"id": a.id, "name": a.name, "child": children}}
    if ref in view.albums:
        al = view.albums[ref]
        return {"directory": {"id": al.id, "parent": al.artist_id, "name": al.name,
                              "child": _songs(ctx, view, al.songs)}}  # fmt: skip
    raise not_found("directory")
