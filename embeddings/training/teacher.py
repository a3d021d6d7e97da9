"""Cached outputs of a pretrained music tagger, as optional distillation targets.

The teacher (for example musicnn, which needs TensorFlow in its own virtual
environment) is run once, offline, over the unlabelled audio; the product never
imports or runs it. What it leaves behind is a folder:

- ``index.json``: ``{"/absolute/resolved/path/of/track.mp3": "file-name.npz", ...}``;
- one ``.npz`` per track with float arrays of shape ``(n_windows, D)``, one per
  layer, for example ``taggram`` (50 tag probabilities), ``penultimate`` (200),
  ``max_pool`` and ``mean_pool``. Window ``i`` covers seconds
  ``[hop * i, hop * i + window)`` of the file, with ``hop = window = 3`` unless the
  npz holds scalar ``hop_seconds`` / ``window_seconds`` arrays saying otherwise.

For a view cut from seconds ``[a, b)`` of a file, the target is the mean of the
windows it overlaps, weighted by the overlap. Each dimension is standardised over
all cached windows of the corpus (zero mean, unit variance) before the cosine
loss, so the loss rewards predicting how a window *differs* from the average
track, not the direction every tag-probability vector shares.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_LAYER = "penultimate"
DEFAULT_WINDOW_SECONDS = 3.0


@dataclass
class TeacherTrack:
    """The teacher windows of one track (standardised), from window ``first`` on."""

    vectors: np.ndarray  # (n, D) float32
    first: int
    hop_s: float
    window_s: float


class TeacherCache:
    """Reads a teacher cache folder (see the module docstring)."""

    def __init__(self, directory: Path, layer: str = DEFAULT_LAYER) -> None:
        self.directory = Path(directory)
        self.layer = layer
        index_file = self.directory / "index.json"
        if not index_file.is_file():
            raise FileNotFoundError(f"teacher cache has no index.json: {self.directory}")
        raw = json.loads(index_file.read_text())
        if not isinstance(raw, dict):
            raise ValueError(f"{index_file} must map audio paths to npz file names")
        self.index = {str(Path(k)): str(v) for k, v in raw.items()}

    def __len__(self) -> int:
        return len(self.index)

    def file_for(self, path: Path) -> Path | None:
        name = self.index.get(str(Path(path).resolve())) or self.index.get(str(Path(path)))
        return self.directory / name if name else None

    def load(self, path: Path) -> tuple[np.ndarray, float, float] | None:
        """(n_windows, D) float32 vectors of ``self.layer``, hop and window in seconds."""
        target = self.file_for(path)
        if target is None or not target.is_file():
            return None
        with np.load(target) as data:
            if self.layer not in data:
                layers = sorted(k for k in data.files if data[k].ndim == 2)
                raise ValueError(
                    f"teacher layer {self.layer!r} not in {target.name}; it has {layers}"
                )
            vectors = np.asarray(data[self.layer], dtype=np.float32)
            window = float(data["window_seconds"]) if "window_seconds" in data else None
            hop = float(data["hop_seconds"]) if "hop_seconds" in data else None
        window = window or DEFAULT_WINDOW_SECONDS
        hop = hop or window
        if vectors.ndim != 2 or len(vectors) == 0:
            return None
        return vectors, hop, window

    def coverage(self, path: Path) -> float | None:
        """Seconds from the file's start that the cached windows cover, or None."""
        loaded = self.load(path)
        if loaded is None:
            return None
        vectors, hop, window = loaded
        return (len(vectors) - 1) * hop + window

    def mean_vector(self, path: Path, max_seconds: float | None = None) -> np.ndarray | None:
        """The track's teacher embedding: mean over its windows (those starting before the cap)."""
        loaded = self.load(path)
        if loaded is None:
            return None
        vectors, hop, _ = loaded
        if max_seconds:
            vectors = vectors[: max(1, int(np.ceil(max_seconds / hop)))]
        return vectors.mean(axis=0)


def load_targets(
    cache: TeacherCache,
    paths: list[Path],
    spans: list[tuple[float, float]],
) -> tuple[list[TeacherTrack | None], int]:
    """Standardised teacher windows for each track, kept only over its excerpt ``span`` (s).

    Returns the list (``None`` where the cache has no entry) and the teacher's dimension.
    """
    loaded: list[tuple[np.ndarray, int, float, float] | None] = []
    for path, (start, end) in zip(paths, spans, strict=True):
        item = cache.load(path)
        if item is None:
            loaded.append(None)
            continue
        vectors, hop, window = item
        first = max(0, int(np.floor((start - window) / hop)))
        last = int(np.ceil(end / hop)) + 1
        kept = vectors[first:last]
        loaded.append((kept, first, hop, window) if len(kept) else None)
    present = [v[0] for v in loaded if v is not None]
    if not present:
        return [None] * len(paths), 0
    dims = {v.shape[1] for v in present}
    if len(dims) != 1:
        raise ValueError(f"teacher layer {cache.layer!r} has mixed dimensions {sorted(dims)}")
    stacked = np.concatenate(present)
    mean = stacked.mean(axis=0)
    std = stacked.std(axis=0) + 1e-6
    out: list[TeacherTrack | None] = []
    for item in loaded:
        if item is None:
            out.append(None)
            continue
        vectors, first, hop, window = item
        out.append(TeacherTrack(((vectors - mean) / std).astype(np.float32), first, hop, window))
    return out, int(dims.pop())


def view_targets(
    teacher: list[TeacherTrack | None],
    track: np.ndarray,
    start_s: np.ndarray,
    end_s: np.ndarray,
    dim: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Overlap-weighted teacher vectors for views covering ``[start_s, end_s)`` of their file.

    Returns ``(n, dim)`` targets and a boolean mask of the views that have one
    (no cache entry, or no overlap with any cached window, means no target).
    """
    targets = np.zeros((len(track), dim), dtype=np.float32)
    valid = np.zeros(len(track), dtype=bool)
    for i, (t, a, b) in enumerate(zip(track, start_s, end_s, strict=True)):
        entry = teacher[int(t)]
        if entry is None:
            continue
        index = entry.first + np.arange(len(entry.vectors))
        w_start = index * entry.hop_s
        overlap = np.clip(np.minimum(b, w_start + entry.window_s) - np.maximum(a, w_start), 0, None)
        total = float(overlap.sum())
        if total <= 0:
            continue
        targets[i] = (overlap[:, None] * entry.vectors).sum(axis=0) / total
        valid[i] = True
    return targets, valid
