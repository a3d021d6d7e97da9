"""Reading tags with mutagen, falling back to the file name.

A library's tags are often incomplete or broken; a failure here must never stop
the analysis, so every error degrades to "no tags".
"""

from __future__ import annotations

import re
from pathlib import Path

import mutagen

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


def read_tags(path: Path) -> Tags:
    """Title, artist, album (and its artist), number, duration, MBID and ISRC.

    The title defaults to the file name.
    """
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
        length = getattr(getattr(audio, "info", None), "length", None)
        tags.duration_s = float(length) if length and length > 0 else None
    if not tags.title:
        tags.title = path.stem
    return tags
