"""Writing a genre into a file's own tag, and putting back exactly what was there.

Only ``sonic tag-genres --apply`` writes to a user's files, and only the genre field.
Before writing, the field's exact old state is kept in the catalog: the strings, the
ID3 text encoding, and where in a Vorbis comment the genre entries stood, so that
``--undo`` writes back the same bytes in the same place. An ID3 tag is saved in the
ID3 version it already had, so no other frame is rewritten in another form.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mutagen
from mutagen.id3 import ID3, TCON
from mutagen.mp4 import MP4Tags

MP4_GENRE = "\xa9gen"


class TagWriteError(OSError):
    """The file's tags cannot be read or written (says which file and why)."""


@dataclass
class GenreField:
    """The state of one file's genre field: enough to restore it exactly."""

    field: str  # "TCON", the Vorbis key as written ("GENRE", "genre"), or "©gen"
    values: list[str] | None  # None: the field is absent
    encoding: int | None = None  # ID3 text encoding
    position: int | None = None  # Vorbis: index of the first genre entry


def _open(path: Path):
    try:
        audio = mutagen.File(str(path))
    except Exception as exc:  # mutagen raises many types on damaged headers
        raise TagWriteError(f"{path}: cannot read its tags: {exc}") from None
    if audio is None:
        raise TagWriteError(f"{path}: not a format whose tags can be written")
    return audio


def _kind(audio) -> str:
    tags, name = audio.tags, type(audio).__name__
    if isinstance(tags, ID3) or (tags is None and name in {"MP3", "WAVE", "AIFF"}):
        return "id3"
    if isinstance(tags, MP4Tags) or (tags is None and name == "MP4"):
        return "mp4"
    if tags is not None and hasattr(tags, "vendor"):
        return "vorbis"
    return "unknown"


def read_field(path: Path) -> GenreField:
    """The genre field of ``path`` as it is now."""
    audio = _open(path)
    kind = _kind(audio)
    if kind == "id3":
        frames = audio.tags.getall("TCON") if audio.tags is not None else []
        if not frames:
            return GenreField("TCON", None)
        return GenreField("TCON", list(frames[0].text), int(frames[0].encoding))
    if kind == "mp4":
        values = audio.tags.get(MP4_GENRE) if audio.tags is not None else None
        return GenreField(MP4_GENRE, None if values is None else [str(v) for v in values])
    if kind == "vorbis":
        entries = list(audio.tags)
        at = [i for i, (key, _) in enumerate(entries) if key.lower() == "genre"]
        if not at:
            return GenreField("GENRE", None)
        return GenreField(entries[at[0]][0], [entries[i][1] for i in at], position=at[0])
    raise TagWriteError(f"{path}: writing genre tags in this format is not supported")


def _save(audio, path: Path) -> None:
    try:
        if isinstance(audio.tags, ID3):
            audio.save(v2_version=3 if audio.tags.version[1] == 3 else 4)
        else:
            audio.save()
    except Exception as exc:
        raise TagWriteError(f"{path}: cannot write its tags: {exc}") from None


def write_field(path: Path, state: GenreField) -> None:
    """Make the genre field of ``path`` exactly ``state`` (absent when values is None)."""
    audio = _open(path)
    kind = _kind(audio)
    if kind == "id3":
        if audio.tags is None:
            audio.add_tags()
        audio.tags.delall("TCON")
        if state.values is not None:
            encoding = 3 if state.encoding is None else state.encoding
            audio.tags.add(TCON(encoding=encoding, text=list(state.values)))
    elif kind == "mp4":
        if audio.tags is None:
            audio.add_tags()
        audio.tags.pop(MP4_GENRE, None)
        if state.values is not None:
            audio.tags[MP4_GENRE] = list(state.values)
    elif kind == "vorbis":
        entries = [(k, v) for k, v in audio.tags if k.lower() != "genre"]
        if state.values is not None:
            at = len(entries) if state.position is None else min(state.position, len(entries))
            entries[at:at] = [(state.field, v) for v in state.values]
        del audio.tags[:]
        audio.tags.extend(entries)
    else:
        raise TagWriteError(f"{path}: writing genre tags in this format is not supported")
    _save(audio, path)


def replace_genre(path: Path, values: list[str]) -> GenreField:
    """Write ``values`` as the file's genre; returns the old field (to back up first)."""
    old = read_field(path)
    new = GenreField(old.field, list(values), old.encoding, old.position)
    write_field(path, new)
    return old
