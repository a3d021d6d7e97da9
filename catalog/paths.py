"""Where a catalog keeps its files: one data directory holds all of them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

DATA_DIR_ENV = "SONIC_DATA_DIR"


def default_data_dir() -> Path:
    """``$SONIC_DATA_DIR``, else the platform's user data directory."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("sonic-catalog", appauthor=False))


@dataclass(frozen=True)
class CatalogPaths:
    root: Path

    @property
    def database(self) -> Path:
        return self.root / "catalog.db"

    @property
    def index(self) -> Path:
        return self.root / "index.faiss"

    @property
    def heatmaps(self) -> Path:
        return self.root / "heatmaps"

    @property
    def stems(self) -> Path:
        return self.root / "stems"

    def ensure(self) -> CatalogPaths:
        self.root.mkdir(parents=True, exist_ok=True)
        return self


# The data directory's artefact folders: a stored path is kept relative to the data
# directory, and an old absolute one is re-rooted at the first of these it contains.
ARTEFACT_FOLDERS = ("heatmaps", "stems")


def stored_path(root: Path, path: str | os.PathLike) -> str:
    """How an artefact's path is stored: relative to ``root`` (POSIX) when it lies inside.

    A data directory can then be copied, moved or mounted elsewhere and the rows
    still name its files. A path outside ``root`` is stored as it is, absolute.
    """
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    for base in (root, root.resolve()):  # as given, and with its symlinks resolved
        try:
            return path.relative_to(base.absolute()).as_posix()
        except ValueError:
            pass
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except (ValueError, OSError):
        return str(path)


def resolve_stored(root: Path, stored: str | os.PathLike) -> Path:
    """The file a stored artefact path names in the data directory ``root`` as it is now.

    Relative paths are joined to ``root``. An absolute one written by older code into
    another (copied or moved) data directory is re-rooted: the part from its artefact
    folder on (``heatmaps/ab/x.png``) is looked up under ``root``, and used if it is
    there, even while the old directory still exists (this one is the catalog's).
    Anything else comes back unchanged.
    """
    path = Path(stored)
    if not path.is_absolute():
        return root / path
    parts = path.parts
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] in ARTEFACT_FOLDERS:
            moved = root.joinpath(*parts[i:])
            if moved.exists():
                return moved
            break
    return path


def display_path(path: str | os.PathLike) -> str:
    """A file path, or text quoting one, that any terminal, JSON encoder or page can show.

    POSIX file names are bytes; Python hands back the bytes that are not UTF-8
    (old Latin-1 names, say) as lone surrogates, which every UTF-8 encoder refuses.
    Those bytes are shown as ``\\xNN`` escapes; a valid name comes back unchanged.
    The catalog keeps the real name (see ``catalog.column_types.FsPath``); this is only
    for showing it.
    """
    raw = os.fspath(path)
    if isinstance(raw, str):
        try:
            raw = raw.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate no file name decodes to (from JSON, say)
            raw = raw.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def path_is_text(path: str) -> bool:
    """Whether ``path`` is valid Unicode (no undecodable bytes smuggled as surrogates)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def displayable(value):
    """``value`` (JSON-like) with every string made safe to show by :func:`display_path`.

    The faces (CLI ``--json``, REST, web UI) call this once on what they are about to
    print or send, instead of escaping each path field by hand.
    """
    if isinstance(value, str):
        return value if path_is_text(value) else display_path(value)
    if isinstance(value, dict):
        return {displayable(k): displayable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [displayable(v) for v in value]
    return value
