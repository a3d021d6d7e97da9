"""Songs, albums, artists and folders of the library view as Subsonic payload dicts.

Field names are the Subsonic/OpenSubsonic ones (``Child``, ``AlbumID3``,
``ArtistID3``, ``Directory``); the genre of a song is the one the catalog browses
it by (the library model's confident genre, else the file's tag; see
:mod:`catalog.library_view`), that of an album the one most of its songs have.
"""

from __future__ import annotations

import mimetypes
from datetime import datetime
from pathlib import Path

from catalog.library_view import Album, Artist, Folder, LibraryView, Song, song_id

CONTENT_TYPES = {
    "mp3": "audio/mpeg", "flac": "audio/flac", "wav": "audio/wav", "ogg": "audio/ogg",
    "oga": "audio/ogg", "opus": "audio/ogg", "m4a": "audio/mp4", "aac": "audio/aac",
    "aif": "audio/aiff", "aiff": "audio/aiff", "wma": "audio/x-ms-wma",
}  # fmt: skip


def suffix(song: Song) -> str:
    return Path(song.path).suffix.lower().lstrip(".")


def content_type(song: Song) -> str:
    ext = suffix(song)
    guessed = mimetypes.guess_type(song.path)[0]
    return CONTENT_TYPES.get(ext) or guessed or "application/octet-stream"


def relative_path(view: LibraryView, song: Song) -> str:
    for root in sorted(view.roots, key=lambda r: -len(str(r))):
        text = str(root).rstrip("/") + "/"
        if song.path.startswith(text):
            return song.path[len(text) :]
    return Path(song.path).name


def child(view: LibraryView, song: Song, starred: dict[str, datetime] | None = None,
          plays: dict | None = None) -> dict:  # fmt: skip
    """A song as a Subsonic ``Child``."""
    duration = int(round(song.duration_s)) if song.duration_s else 0
    known = song.size and song.duration_s
    bit_rate = int(song.size * 8 / 1000 / song.duration_s) if known else None
    sid = song_id(song.id)
    played = (plays or {}).get(song.id)
    return {
        "id": sid,
        "parent": song.dir_id or song.album_id,
        "isDir": False,
        "title": song.title,
        "album": song.album,
        "artist": song.artist,
        "track": song.track_number,
        "genre": song.genre,
        "genres": [{"name": g} for g in song.genres],
        "coverArt": song.album_id,
        "size": song.size,
        "contentType": content_type(song),
        "suffix": suffix(song),
        "duration": duration,
        "bitRate": bit_rate,
        "samplingRate": song.sample_rate,
        "channelCount": song.channels,
        "path": relative_path(view, song),
        "isVideo": False,
        "created": song.added_at,
        "albumId": song.album_id,
        "artistId": song.artist_id,
        "type": "music",
        "mediaType": "song",
        "musicBrainzId": song.mbid,
        "isrc": [song.isrc] if song.isrc else [],
        "displayArtist": song.artist,
        "displayAlbumArtist": song.album_artist,
        "playCount": played[0] if played else 0,
        "played": played[1] if played else None,
        "starred": (starred or {}).get(sid),
    }


def album(album_: Album, starred: dict | None = None, songs: list[dict] | None = None) -> dict:
    """An album as ``AlbumID3`` (with its songs as ``song`` when given)."""
    data = {
        "id": album_.id,
        "name": album_.name,
        "title": album_.name,
        "album": album_.name,
        "artist": album_.artist,
        "artistId": album_.artist_id,
        "coverArt": album_.id,
        "songCount": len(album_.songs),
        "duration": album_.duration,
        "created": album_.created,
        "genre": album_.genre,
        "genres": [{"name": album_.genre}] if album_.genre else [],
        "isDir": True,
        "parent": album_.artist_id,
        "displayArtist": album_.artist,
        "starred": (starred or {}).get(album_.id),
    }
    if songs is not None:
        data["song"] = songs
    return data


def artist(artist_: Artist, starred: dict | None = None, albums: list[dict] | None = None) -> dict:
    data = {
        "id": artist_.id,
        "name": artist_.name,
        "coverArt": artist_.id,
        "albumCount": len(artist_.albums),
        "starred": (starred or {}).get(artist_.id),
    }
    if albums is not None:
        data["album"] = albums
    return data


def folder_child(folder: Folder) -> dict:
    """A sub-folder as a ``Child`` with ``isDir``."""
    return {"id": folder.id, "parent": folder.parent or f"mf-{folder.root_index}",
            "isDir": True, "title": folder.name, "name": folder.name}  # fmt: skip


def index_letter(name: str) -> str:
    first = name.strip()[:1].upper()
    return first if first.isalpha() else "#"
