"""The links a track carries in every listing, and the media type of a file served."""

from __future__ import annotations

import mimetypes
from pathlib import Path

AUDIO_TYPES = {
    ".mp3": "audio/mpeg", ".flac": "audio/flac", ".wav": "audio/wav", ".ogg": "audio/ogg",
    ".oga": "audio/ogg", ".opus": "audio/ogg", ".m4a": "audio/mp4", ".aac": "audio/aac",
    ".aif": "audio/aiff", ".aiff": "audio/aiff", ".wma": "audio/x-ms-wma",
}  # fmt: skip


def with_links(track: dict) -> dict:
    """``track`` with its details and audio URLs (``/tracks/{id}``, ``.../audio``)."""
    return {
        **track,
        "url": f"/tracks/{track['id']}",
        "audio_url": f"/tracks/{track['id']}/audio",
    }


def audio_type(path: Path) -> str:
    return (
        AUDIO_TYPES.get(path.suffix.lower())
        or mimetypes.guess_type(path.name)[0]
        or ("application/octet-stream")
    )


# ``responses=`` of the routes that answer with a file instead of JSON.
AUDIO_FILE = {"content": {"audio/*": {}}, "description": "The audio file (range requests)."}
