"""The files of a teacher cache, shared by the three writers beside this module.

One file walk, one naming rule, one index and one atomic writer, so that the
musicnn and handcrafted caches list the same tracks under the same names and
``teacher_merge.py`` can join them; the layout is what
``embeddings/training/teacher.py`` (``sonic pretrain --teacher-cache``) reads.

It must import in the musicnn virtual environment too (TensorFlow, numpy < 2, no
torch, no PyAV), so it takes nothing of the product but the standard-library
atomic writer (``embeddings/atomic.py``), and keeps its own list of the audio
extensions librosa and libsndfile read rather than the audio layer's, whose
package needs PyAV.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from embeddings.atomic import atomic_write  # noqa: E402  (the repository, above)

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif"}
INDEX_FILE = "index.json"


def audio_files(folders: Iterable[Path]) -> list[Path]:
    """Audio files under the folders (recursively, links followed), sorted, resolved."""
    found: set[Path] = set()
    for folder in folders:
        if folder.is_file():
            found.add(folder.resolve())
            continue
        for dirpath, _, filenames in os.walk(folder, followlinks=True):
            for name in filenames:
                if Path(name).suffix.lower() in AUDIO_SUFFIXES:
                    found.add((Path(dirpath) / name).resolve())
    return sorted(found)


def npz_name(path: Path) -> str:
    """A readable, collision-free file name for a track's arrays."""
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)[:48]
    return f"{stem}-{digest}.npz"


def read_index(cache: Path) -> dict[str, str]:
    """``{absolute resolved audio path: npz file name}`` of a cache (empty if none yet)."""
    index_file = cache / INDEX_FILE
    return json.loads(index_file.read_text()) if index_file.exists() else {}


def write_index(cache: Path, index: dict[str, str]) -> None:
    data = (json.dumps(index, indent=0, sort_keys=True) + "\n").encode()
    atomic_write(cache / INDEX_FILE, data)


def write_arrays(target: Path, arrays: dict[str, np.ndarray]) -> None:
    """One track's ``.npz``, written atomically (a killed run leaves no half file)."""
    atomic_write(target, lambda fh: np.savez(fh, **arrays))
