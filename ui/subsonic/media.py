"""``stream``, ``download`` and ``getCoverArt``: files only from the library roots.

Streams are the original file (no transcoding; ``maxBitRate`` and ``format`` are
ignored, as the API allows), with HTTP Range answered by Starlette's FileResponse.
The path is read from the catalog at request time (a moved file is found at its
new place) and served only when it lies under a library root.

Cover art is the first picture embedded in one of the album's files, else a cover
file in its folder (``cover.jpg``, ``folder.jpg``, ``front.jpg``, ``.png`` too);
``size`` scales it down with Pillow.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import mutagen
from fastapi.responses import FileResponse, Response
from sqlalchemy import select

from catalog.schema import Track, TrackStatus
from ui.subsonic import entities as e
from ui.subsonic.context import Context, not_found, track_id_of
from ui.subsonic.registry import method

COVER_FILES = ("cover", "folder", "front", "album", "albumart")
COVER_EXTS = (".jpg", ".jpeg", ".png", ".webp")
MAX_COVER_SIZE = 2000


def _file(ctx: Context) -> tuple[Path, str]:
    ref = ctx.required("id")
    track_id = track_id_of(ref)
    if track_id is None:
        raise not_found("song")
    with ctx.catalog.engine.connect() as conn:
        row = conn.execute(select(Track.path, Track.status).where(Track.id == track_id)).first()
    if row is None or row.status == TrackStatus.MISSING:
        raise not_found("song")
    path = Path(row.path)
    if not path.is_file() or not ctx.state.may_serve_audio(path):
        raise not_found("song file")
    return path, e.CONTENT_TYPES.get(path.suffix.lower().lstrip("."), "application/octet-stream")


@method("stream")
def stream(ctx: Context) -> Response:
    path, media_type = _file(ctx)
    return FileResponse(path, media_type=media_type)


@method("download")
def download(ctx: Context) -> Response:
    path, media_type = _file(ctx)
    return FileResponse(path, media_type=media_type, filename=path.name)


def embedded_picture(path: Path) -> bytes | None:
    """The first picture embedded in an audio file's tags, if any (never raises)."""
    try:
        audio = mutagen.File(str(path))
    except Exception:  # damaged headers: no art
        return None
    if audio is None:
        return None
    pictures = getattr(audio, "pictures", None)  # FLAC
    if pictures:
        return pictures[0].data
    tags = audio.tags
    if tags is None:
        return None
    try:
        for key in list(tags.keys()):
            if str(key).startswith("APIC"):  # ID3
                return tags[key].data
        if "covr" in tags and tags["covr"]:  # MP4
            return bytes(tags["covr"][0])
        blocks = tags.get("metadata_block_picture") if hasattr(tags, "get") else None
        if blocks:  # Ogg Vorbis / Opus
            from mutagen.flac import Picture

            return Picture(base64.b64decode(blocks[0])).data
    except Exception:  # an odd tag layout: no art
        return None
    return None


def _cover_file(folder: Path) -> Path | None:
    try:
        names = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
    except OSError:
        return None
    for stem in COVER_FILES:
        for ext in COVER_EXTS:
            if stem + ext in names:
                return names[stem + ext]
    return None


def _art_for(ctx: Context, ref: str) -> bytes | Path | None:
    view = ctx.view
    songs = []
    if ref in view.albums:
        songs = view.albums[ref].songs
    elif ref in view.artists:
        songs = [s for a in view.artists[ref].albums for s in a.songs]
    elif view.song(ref) is not None:
        songs = [view.song(ref)]
    for song in songs[:20]:
        path = Path(song.path)
        if ctx.state.may_serve_audio(path):
            data = embedded_picture(path)
            if data:
                return data
    for folder in dict.fromkeys(Path(s.path).parent for s in songs[:200]):
        found = _cover_file(folder)
        if found is not None and ctx.state.may_serve_audio(found):
            return found
    return None


def _kind(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


@method("getCoverArt")
def cover_art(ctx: Context) -> Response:
    ref = ctx.required("id")
    size = ctx.integer("size", 0, 0, MAX_COVER_SIZE)
    found = _art_for(ctx, ref)
    if found is None:
        raise not_found("cover art")
    data = found.read_bytes() if isinstance(found, Path) else found
    if size:
        try:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as image:
                image = image.convert("RGB")
                image.thumbnail((size, size))
                out = io.BytesIO()
                image.save(out, "JPEG", quality=88)
                data = out.getvalue()
        except Exception:  # not an image Pillow reads: served as it is
            pass
    return Response(data, media_type=_kind(data), headers={"Cache-Control": "max-age=86400"})
