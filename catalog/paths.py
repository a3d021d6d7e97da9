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


def display_path(path: str | os.PathLike) -> str:
    """A file path as text that any terminal, JSON encoder or web page can show.

    POSIX file names are bytes; Python hands back the bytes that are not UTF-8
    (old Latin-1 names, say) as lone surrogates, which every UTF-8 encoder refuses.
    Those bytes are shown as ``\\xNN`` escapes; a valid name comes back unchanged.
    The catalog keeps the real name (see ``catalog.schema.FsPath``); this is only
    for showing it.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def path_is_text(path: str) -> bool:
    """Whether ``path`` is valid Unicode (no undecodable bytes smuggled as surrogates)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
