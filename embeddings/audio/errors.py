"""Why a file could not be decoded, in one wording for every reader.

Ingest records these reasons in the catalog, uploads return them to the browser and
training lists them in ``metrics.json``; they are written once here so that the same
bad file reads the same everywhere, without the decoders' prefixes or the file's own
name (the caller names the file).
"""

from __future__ import annotations

import os
import re
from pathlib import Path


class DecodeError(Exception):
    """The file could not be decoded at all; the message is shown to the user."""


def short_reason(exc: Exception) -> str:
    """The last line of a decoder's message, without libsndfile's "Error opening" prefix."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text.removeprefix("Error opening ").strip()


# libsndfile's words for a format it does not recognise, said of a file that exists.
_SNDFILE_UNRECOGNISED = "File does not exist or is not a regular file"


def sndfile_name(path: Path | str) -> str | bytes:
    """``path`` as libsndfile can open it: its bytes when the name is not valid UTF-8.

    soundfile encodes a str name strictly, so a Latin-1 file name (which Python holds
    with lone surrogates) would fail there and fall through to the other decoder; as
    bytes it opens like any other file.
    """
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name)
    return name


def _without_path(reason: str, path: str) -> str:
    """A decoder's reason with the file's name taken out: the caller names the file."""
    for quoted in (f"'{path}'", f'"{path}"', repr(sndfile_name(path))):
        reason = reason.replace(f": {quoted}", "").replace(f"{quoted}: ", "")
    return re.sub(r"^\[Errno -?\d+\]\s*", "", reason).strip(" .;:") or reason


def unreadable(sf_exc: Exception, av_exc: Exception, path: Path | None = None) -> DecodeError:
    """The error for a file neither decoder could open, naming both reasons.

    libsndfile answers "File does not exist or is not a regular file" for any format
    it does not know; the file does exist by then, so that is said plainly instead.
    """
    sf_reason, av_reason = short_reason(sf_exc), str(av_exc)
    if path is not None:
        sf_reason, av_reason = (
            _without_path(sf_reason, str(path)),
            _without_path(av_reason, str(path)),
        )
    if _SNDFILE_UNRECOGNISED in sf_reason:
        sf_reason = "format not recognised"
    return DecodeError(f"not a readable audio file (libsndfile: {sf_reason}; ffmpeg: {av_reason})")


def failure_reason(exc: Exception) -> str:
    """One line for a user: a DecodeError's own message, else the exception's type too."""
    if isinstance(exc, DecodeError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"cannot read file: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"
