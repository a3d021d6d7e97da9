"""Reading tags with mutagen, falling back to the file name.

A library's tags are often incomplete or broken; a failure here must never stop
the analysis, so every error degrades to "no tags".
"""

from __future__ import annotations

import re
from pathlib import Path

import mutagen
from mutagen.id3 import ID3

from catalog.records import Tags


def _first(value: object) -> str | None:
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _track_number(value: str | None) -> int | None:
    match = re.match(r"\s*(\d+)", value or "")
    return int(match.group(1)) if match else None


def _identifier(value: str | None, limit: int) -> str | None:
    """An MBID or ISRC as given (already stripped); one too long to be real is dropped,
    not truncated, so a media server never matches on half an identifier."""
    if value is None or len(value) > limit:
        return None
    return value


def _raw_tcon(path: Path, translated) -> list[str]:
    """TCON's text untranslated: mutagen's default load rewrites "(32)" as "Classical"."""
    try:
        frames = ID3(str(path), translate=False).getall("TCON")
    except Exception:  # an ID3 inside WAV/AIFF chunks: the translated text will do
        frames = translated.getall("TCON")
    return [str(text) for frame in frames for text in frame.text]


def _genre_values(path: Path, audio: object, get) -> list[str]:
    """The genre field's values exactly as the file holds them (multi-valued kept apart).

    ID3 (MP3, AIFF, WAV): the TCON frame's own text, so numeric forms such as "(17)"
    reach the catalog as written (normalisation reads them); Vorbis comments (FLAC,
    Ogg, Opus) GENRE; MP4 ``©gen`` (mutagen reads the numeric ``gnre`` atom into it).
    """
    id3 = getattr(getattr(audio, "tags", None), "_EasyID3__id3", None)
    if id3 is not None:
        return _raw_tcon(path, id3) if id3.getall("TCON") else []
    values = get("genre") or []
    if isinstance(values, str):
        values = [values]
    return [str(v) for v in values if str(v).strip()]


def read_genre_values(path: Path) -> list[str]:
    """Only the genre field (for tracks indexed before genre tags were kept)."""
    try:
        audio = mutagen.File(str(path), easy=True)
    except Exception:  # damaged headers: no tags, as read_tags
        return []
    if audio is None:
        return []
    raw = audio.tags or {}
    try:
        return _genre_values(path, audio, raw.get if hasattr(raw, "get") else (lambda _key: None))
    except Exception:
        return []


def read_tags(path: Path) -> Tags:
    """Title, artist, album (and its artist), track number, genre values, duration,
    MBID and ISRC; the title defaults to the file name."""
    path = Path(path)
    tags = Tags()
    try:
        audio = mutagen.File(str(path), easy=True)
    except Exception:  # mutagen raises many types on damaged headers
        audio = None
    if audio is not None:
        raw = audio.tags or {}
        get = raw.get if hasattr(raw, "get") else (lambda _key: None)
        tags.title = _first(get("title"))
        tags.artist = _first(get("artist")) or _first(get("albumartist"))
        tags.album = _first(get("album"))
        tags.album_artist = _first(get("albumartist"))
        tags.mbid = _identifier(_first(get("musicbrainz_trackid")), 64)
        isrc = _identifier(_first(get("isrc")), 32)
        tags.isrc = isrc.upper().replace("-", "") if isrc else None  # as media servers send it
        tags.track_number = _track_number(_first(get("tracknumber")))
        try:
            tags.genres = _genre_values(path, audio, get)
        except Exception:  # a malformed frame is "no genre", never a failed track
            tags.genres = []
        length = getattr(getattr(audio, "info", None), "length", None)
        tags.duration_s = float(length) if length and length > 0 else None
    if tags.genres is None:
        tags.genres = []  # read, and there is none
    if not tags.title:
        tags.title = path.stem
    return tags
