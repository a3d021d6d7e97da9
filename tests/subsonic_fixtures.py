"""A served catalog for the OpenSubsonic tests: the small library plus art and identifiers.

The five tracks of ``service_fixtures.build_small_library``, with a ``cover.jpg``
in one album's folder, a picture embedded in one FLAC, and a MusicBrainz id and
ISRC on another, ingested, with three users: an admin with token auth and an API
key, a non-admin whose password is kept as a hash only, and nobody else.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image

ADMIN, ADMIN_PW = "ana", "s3cret pw"
PLAIN, PLAIN_PW = "bob", "hunter2"
MBID = "8f3471b5-7e6a-48da-86a9-c1c07a0f47ae"
ISRC = "GBAYE0601498"


def jpeg(colour: tuple[int, int, int], size: int = 300) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, "JPEG")
    return out.getvalue()


def decorate(library) -> None:
    """Cover file, embedded picture, MBID and ISRC on the small library's files."""
    from mutagen.flac import FLAC, Picture

    (library.root / "alpha" / "cover.jpg").write_bytes(jpeg((200, 30, 30)))
    hiss = FLAC(str(library.files["hiss"]))
    picture = Picture()
    picture.type, picture.mime, picture.data = 3, "image/jpeg", jpeg((30, 30, 200), 200)
    hiss.add_picture(picture)
    hiss.save()
    pulse = FLAC(str(library.files["pulse"]))
    pulse["musicbrainz_trackid"] = MBID
    pulse["isrc"] = ISRC
    pulse.save()


def token_params(user: str, password: str, salt: str = "c19b2d") -> dict:
    token = hashlib.md5((password + salt).encode()).hexdigest()
    return {"u": user, "t": token, "s": salt, "v": "1.16.1", "c": "tests"}


def album_folder(path: Path) -> str:
    return path.parent.name
