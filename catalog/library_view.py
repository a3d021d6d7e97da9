"""The library as players see it: artists, albums and folders derived from the tracks.

Subsonic clients browse by album artist and album (ID3 tags) or by folder; the
catalog stores tracks only, so this builds those groupings from the analysed tracks,
in memory, once per catalog change (the index version, plus a cheap look at the
newest ``updated_at`` and the library genre model's version at most every
``RECHECK_S``, for moves, tag edits and a refit of ``sonic learn-genres``). At 100k tracks a build
is one SELECT and a pass in Python (about a second); every browse after it is a dict
lookup.

Ids are strings that survive re-scans and moves: ``tr-<track id>`` (track ids
follow a file's content across moves), ``al-`` + a hash of album artist and album,
``ar-`` + a hash of the artist's name, ``dr-`` + a hash of the folder's path.
Albums group by album artist, then artist; a file without an album tag belongs to
an album named after its folder.

A song's genre is the one ``sonic tracks --genre`` browses it by (issue 24): with a
library genre model fitted (``sonic learn-genres``), the model's confident
prediction, in the library's own vocabulary; where the model is "uncertain" the
file's own genre tag (normalised), else none: a player shows no genre rather than
a guess the model itself does not trust. A track the model has not predicted yet
falls back to its tag, then to the shipped head if it is sure. Without a library
model, the shipped head's genre, as before.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import and_, func, select

from catalog.genre_names import GTZAN_TO_CANONICAL
from catalog.genre_views import library_state, shipped_threshold
from catalog.schema import LibraryPrediction, Track, TrackStatus
from catalog.store import Catalog

UNKNOWN_ARTIST = "Unknown Artist"
RECHECK_S = 5.0

SONG_COLUMNS = (
    Track.id, Track.path, Track.title, Track.artist, Track.album_artist, Track.album,
    Track.track_number, Track.duration_s, Track.genre, Track.confidence, Track.size,
    Track.format, Track.added_at, Track.mbid, Track.isrc, Track.sample_rate, Track.channels,
    Track.genre_tags,
)  # fmt: skip


def _hash(*parts: str) -> str:
    return hashlib.sha1("\0".join(p.casefold() for p in parts).encode()).hexdigest()[:16]


def artist_id(name: str) -> str:
    return "ar-" + _hash(name)


def album_id(artist: str, album: str) -> str:
    return "al-" + _hash(artist, album)


def dir_id(path: str) -> str:
    return "dr-" + hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def song_id(track_id: int) -> str:
    return f"tr-{track_id}"


@dataclass
class Song:
    id: int
    path: str
    title: str
    artist: str
    album: str
    album_artist: str
    track_number: int | None
    duration_s: float | None
    genre: str | None
    confidence: float | None
    size: int | None
    format: str | None
    added_at: datetime | None
    mbid: str | None
    isrc: str | None
    sample_rate: int | None
    channels: int | None
    album_id: str = ""
    artist_id: str = ""
    dir_id: str = ""
    genres: list[str] = field(default_factory=list)  # ``genre`` first; several from a tag
    genre_source: str | None = None  # "library", "tag" or "shipped"


@dataclass
class Album:
    id: str
    name: str
    artist: str
    artist_id: str
    songs: list[Song] = field(default_factory=list)
    genre: str | None = None
    created: datetime | None = None
    folder: str = ""  # where its first song lives (cover files are looked for there)

    @property
    def duration(self) -> int:
        return int(sum(s.duration_s or 0 for s in self.songs))


@dataclass
class Artist:
    id: str
    name: str
    albums: list[Album] = field(default_factory=list)


@dataclass
class Folder:
    id: str
    path: str
    name: str
    parent: str | None  # a folder id, or None for a library root
    root_index: int  # which music folder (1-based)
    folders: list[str] = field(default_factory=list)
    songs: list[Song] = field(default_factory=list)


@dataclass
class LibraryView:
    version: tuple
    songs: dict[int, Song]
    albums: dict[str, Album]
    artists: dict[str, Artist]
    folders: dict[str, Folder]
    roots: list[Path]
    genres: Counter  # song genre (see the module's docstring) -> songs
    genre_albums: Counter  # that genre -> albums whose genre it is

    def song(self, ref: str) -> Song | None:
        if not ref.startswith("tr-") or not ref[3:].isdigit():
            return None
        return self.songs.get(int(ref[3:]))


def _sort_key(text: str) -> str:
    return text.casefold()


class _GenrePicker:
    """Which genre a song shows, from the row of :func:`build_view`'s query."""

    def __init__(self, catalog: Catalog, state: dict | None) -> None:
        self.library = state is not None
        self.library_threshold = float(state["threshold"]) if state else 0.0
        self.shipped_threshold = shipped_threshold(catalog, state)

    def __call__(self, row) -> tuple[list[str], float | None, str | None]:
        """(genres, the confidence behind them, their source); ([], None, None) for none."""
        if not self.library:  # the shipped head's genre, as before learn-genres
            return ([row.genre], row.confidence, "shipped") if row.genre else ([], None, None)
        if row.library_genre is not None and row.library_confidence >= self.library_threshold:
            return [row.library_genre], row.library_confidence, "library"
        tags = json.loads(row.genre_tags) if row.genre_tags else []
        if tags:
            return tags, None, "tag"
        sure = row.confidence is not None and row.confidence >= self.shipped_threshold
        if row.library_genre is None and row.genre and sure:  # not predicted by the model yet
            return [GTZAN_TO_CANONICAL.get(row.genre, row.genre)], row.confidence, "shipped"
        return [], None, None  # the library model is uncertain and the file has no tag


def build_view(catalog: Catalog, version: tuple) -> LibraryView:
    """Group the analysed tracks of the active model into albums, artists and folders."""
    state = library_state(catalog)
    pick = _GenrePicker(catalog, state)
    query = select(
        *SONG_COLUMNS,
        LibraryPrediction.genre.label("library_genre"),
        LibraryPrediction.confidence.label("library_confidence"),
    ).outerjoin(
        LibraryPrediction,
        and_(LibraryPrediction.track_id == Track.id,
             LibraryPrediction.model_version == (state["version"] if state else -1)),
    ).where(Track.status == TrackStatus.OK, Track.model_id == catalog.active_model_id)  # fmt: skip
    with catalog.engine.connect() as conn:
        rows = conn.execute(query).all()
    roots = [Path(r) for r in catalog.library_roots()]
    songs: dict[int, Song] = {}
    albums: dict[str, Album] = {}
    artists: dict[str, Artist] = {}
    folders: dict[str, Folder] = {}
    genres: Counter = Counter()
    root_strs = [str(r) for r in roots]
    for row in rows:
        path = Path(row.path)
        album_artist = row.album_artist or row.artist or UNKNOWN_ARTIST
        album_name = row.album or path.parent.name or "Unknown Album"
        song_genres, confidence, source = pick(row)
        song = Song(
            id=row.id, path=row.path, title=row.title or path.stem,
            artist=row.artist or album_artist, album=album_name, album_artist=album_artist,
            track_number=row.track_number, duration_s=row.duration_s,
            genre=song_genres[0] if song_genres else None,
            confidence=confidence, size=row.size, format=row.format,
            added_at=row.added_at, mbid=row.mbid, isrc=row.isrc,
            sample_rate=row.sample_rate, channels=row.channels,
            genres=song_genres, genre_source=source,
        )  # fmt: skip
        song.album_id = album_id(album_artist, album_name)
        song.artist_id = artist_id(album_artist)
        songs[song.id] = song
        if song.genre:
            genres[song.genre] += 1
        album = albums.get(song.album_id)
        if album is None:
            album = albums[song.album_id] = Album(
                song.album_id, album_name, album_artist, song.artist_id,
                folder=str(path.parent),
            )  # fmt: skip
            artist = artists.get(song.artist_id)
            if artist is None:
                artist = artists[song.artist_id] = Artist(song.artist_id, album_artist)
            artist.albums.append(album)
        album.songs.append(song)
        if song.added_at and (album.created is None or song.added_at < album.created):
            album.created = song.added_at
        _place_in_folders(song, path, root_strs, folders)
    genre_albums: Counter = Counter()
    for album in albums.values():
        album.songs.sort(key=lambda s: (s.track_number or 0, _sort_key(s.title), s.id))
        counted = Counter(s.genre for s in album.songs if s.genre)
        album.genre = counted.most_common(1)[0][0] if counted else None
        if album.genre:
            genre_albums[album.genre] += 1
    for artist in artists.values():
        artist.albums.sort(key=lambda a: _sort_key(a.name))
    for folder in folders.values():
        folder.folders.sort(key=lambda f: _sort_key(folders[f].name))
        folder.songs.sort(key=lambda s: _sort_key(Path(s.path).name))
    return LibraryView(version, songs, albums, artists, folders, roots, genres, genre_albums)


def _place_in_folders(song: Song, path: Path, roots: list[str], folders: dict) -> None:
    """Add the song to its folder, creating the folders between it and its library root."""
    text = str(path)
    matches = [(i, r) for i, r in enumerate(roots) if text.startswith(r.rstrip("/") + "/")]
    if not matches:
        return
    index, root = max(matches, key=lambda m: len(m[1]))
    root = root.rstrip("/")
    parts = Path(text[len(root) + 1 :]).parts[:-1]
    parent: str | None = None
    current = root
    chain = []
    for part in parts:
        current = f"{current}/{part}"
        chain.append((current, part))
    if not chain:  # a file right in the root: its folder is the root itself
        song.dir_id = "mf-" + str(index + 1)
        return
    for folder_path, name in chain:
        fid = dir_id(folder_path)
        if fid not in folders:
            folders[fid] = Folder(fid, folder_path, name, parent, index + 1)
            if parent is not None:
                folders[parent].folders.append(fid)
        parent = fid
    folders[parent].songs.append(song)
    song.dir_id = parent


class ViewCache:
    """The current :class:`LibraryView` of a catalog, rebuilt only after it changed."""

    def __init__(self) -> None:
        self._view: LibraryView | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def _version(self, catalog: Catalog) -> tuple:
        """What the view depends on; a refit library genre model (new version) counts."""
        with catalog.engine.connect() as conn:
            newest = conn.scalar(select(func.max(Track.updated_at)))
        state = library_state(catalog)
        return (catalog.index_version(), catalog.active_model_id, newest,
                tuple(map(str, catalog.library_roots())),
                state and state["version"], state and state["shipped_threshold"])  # fmt: skip

    def get(self, catalog: Catalog) -> LibraryView:
        with self._lock:
            view = self._view
            now = time.monotonic()
            quick = (catalog.index_version(), catalog.active_model_id)
            if view is not None and view.version[:2] == quick and now - self._checked < RECHECK_S:
                return view
            version = self._version(catalog)
            self._checked = now
            if view is None or view.version != version:
                view = self._view = build_view(catalog, version)
            return view
