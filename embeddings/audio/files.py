"""Which files are audio, and the one walk that finds them.

Ingest, training, pretraining, the similarity evaluation and the dataset report all
look for audio with these: the same extensions (training used to skip the .aac and
.mp4 files ingest indexes) and the same rule for hidden files and folders.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3",
     ".m4a", ".aac", ".mp4", ".aif", ".aiff", ".aifc", ".au"}
)  # fmt: skip


def is_audio_name(path: Path | str) -> bool:
    """Whether ``path``'s extension is one the decoders are meant to read."""
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def iter_audio_files(
    roots: Iterable[Path], unreadable: list[tuple[str, str]] | None = None
) -> Iterator[Path]:
    """Audio files under ``roots`` (files or folders), absolute, in a stable order.

    Hidden files and folders are skipped: they include macOS ``._`` resource forks,
    which carry an audio extension but no audio. Nothing is opened or followed
    here: fifos, devices and dangling symbolic links with an audio extension are
    yielded too, so the worker records each as a failure with its reason instead
    of it being retried, unseen, on every run. A folder that cannot be listed is
    appended to ``unreadable`` as (folder, reason): its files are not missing, just
    out of sight, and the run says so.
    """
    seen: set[str] = set()
    for root in roots:
        root = Path(root).expanduser().absolute()
        if os.path.lexists(root) and not root.is_dir():
            candidates: Iterable[Path] = [root]
        else:
            candidates = _walk(root, unreadable)
        for path in candidates:
            if is_audio_name(path) and str(path) not in seen:
                seen.add(str(path))
                yield path


def audio_files_in(folder: Path) -> list[Path]:
    """The regular audio files under ``folder`` as given (not made absolute), sorted.

    For the readers that learn from a folder (training, pretraining, evaluation):
    the walk and the extensions are ingest's, but a fifo or a dangling link is left
    out rather than recorded, as there is no catalog to record it in.
    """
    folder = Path(folder)
    found = [folder] if folder.is_file() else _walk(folder, None)
    return sorted(p for p in found if is_audio_name(p) and p.is_file())


def _walk(root: Path, unreadable: list[tuple[str, str]] | None) -> Iterator[Path]:
    def onerror(exc: OSError) -> None:
        if unreadable is not None:
            folder = exc.filename if exc.filename is not None else root
            unreadable.append((str(folder), f"cannot read folder: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name
