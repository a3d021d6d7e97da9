"""Unlabelled audio for self-supervised pretraining: find it, decode it once, keep it small.

Pretraining needs many tracks and random crops of each, drawn thousands of times,
so every file is decoded once into its unreferenced dB mel spectrogram
(``dataset.log_power``) and cached on disk by :class:`dataset.FeatureCache`. A
track longer than ``max_seconds`` keeps only an excerpt from a seeded offset, in
fp16: about 1 MB per track at 90 s, whatever the track's length. A whole music
library would not fit in memory that way (20,000 tracks, 20 GB), so ``max_bytes``
caps the corpus: files are taken one folder at a time in turn, each folder in a
seeded random order, until the cap is reached, so every album is represented and
the files left over are never decoded.

``exclude`` folders are skipped wherever they sit under the roots: held-out
soundtracks used to evaluate sound-alike search must never be pretrained on.
Files that do not decode, or decode to silence, are reported and left out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from embeddings.audio import audio_files_in, failure_reason
from embeddings.frontend import FrontendConfig
from embeddings.training.dataset import FeatureCache

Progress = Callable[..., Iterable]


@dataclass
class UnlabelledTrack:
    """One track's cached excerpt; ``offset_s`` is where it starts in the file."""

    path: Path
    log_power: np.ndarray  # (n_mels, frames) float16, unreferenced dB
    offset_s: float
    duration_s: float

    @property
    def frames(self) -> int:
        return int(self.log_power.shape[1])


@dataclass
class Corpus:
    tracks: list[UnlabelledTrack]
    failed: list[tuple[Path, str]] = field(default_factory=list)
    excluded: int = 0  # audio files skipped because they sit under an --exclude folder
    left_out: int = 0  # files never decoded because the memory cap was reached

    @property
    def nbytes(self) -> int:
        return sum(t.log_power.nbytes for t in self.tracks)

    @property
    def seconds(self) -> float:
        return sum(t.duration_s for t in self.tracks)


def _inside(path: Path, folders: Sequence[Path]) -> bool:
    return any(path.is_relative_to(folder) for folder in folders)


def discover_audio(roots: Iterable[Path], exclude: Iterable[Path] = ()) -> tuple[list[Path], int]:
    """Resolved audio files under ``roots`` (recursive, sorted, deduplicated), minus ``exclude``.

    Returns the files and how many were left out because of ``exclude``. A file is
    excluded when it lies under an excluded folder as found or once symlinks are
    resolved, or when it *is* a file found under an excluded folder: a held-out
    set made of symlinks into the library stays out however the roots are given.
    Hidden files and folders are skipped, as ingest skips them.
    """
    excluded_dirs: list[Path] = []
    excluded_files: set[Path] = set()
    for folder in exclude:
        folder = Path(folder).expanduser().absolute()
        excluded_dirs += [folder, folder.resolve()]
        if folder.exists():
            excluded_files |= {p.resolve() for p in audio_files_in(folder)}
    found: set[Path] = set()
    skipped: set[Path] = set()
    for root in roots:
        root = Path(root).expanduser().absolute()
        if not root.exists():
            raise FileNotFoundError(f"no such file or folder: {root}")
        for path in audio_files_in(root):
            resolved = path.resolve()
            out = (
                resolved in excluded_files
                or _inside(path, excluded_dirs)
                or _inside(resolved, excluded_dirs)
            )
            (skipped if out else found).add(resolved)
    found -= skipped  # the same file reached by another route is still excluded
    return sorted(found), len(skipped)


def _load_one(
    args: tuple[Path, Path, FrontendConfig, float | None, int, float | None],
) -> tuple[Path, np.ndarray | None, float, float, str | None]:
    path, cache_dir, frontend, max_seconds, seed, within_s = args
    cache = FeatureCache(cache_dir, frontend)
    try:
        spec, offset, duration = cache.excerpt(path, max_seconds, seed, within_s)
    except Exception as exc:  # corrupt, empty, unsupported: report and go on
        return path, None, 0.0, 0.0, failure_reason(exc)
    if spec.size == 0 or float(spec.max()) - float(spec.min()) < 1.0:
        return path, None, offset, duration, "silent"
    return path, spec, offset, duration, None


def budget_order(files: Sequence[Path], seed: int) -> list[Path]:
    """The order a memory cap takes ``files`` in: one file per folder in turn.

    Folders (albums, as ``--positives album`` sees them) take turns in a seeded
    random order, and each gives its files in a seeded random order, so any prefix
    holds as many albums as it can and no album is favoured by its name.
    """
    rng = np.random.default_rng(seed)
    folders: dict[Path, list[Path]] = {}
    for path in files:
        folders.setdefault(Path(path).parent, []).append(Path(path))
    queues = [
        [group[i] for i in rng.permutation(len(group))] for _, group in sorted(folders.items())
    ]
    turns = rng.permutation(len(queues))
    order: list[Path] = []
    while len(order) < len(files):
        for i in turns:
            if queues[i]:
                order.append(queues[i].pop())
    return order


def _outcomes(jobs: list[tuple], workers: int) -> Iterator[tuple]:
    """``_load_one`` over ``jobs`` in order, a few files ahead on ``workers`` processes.

    Lazy, so that a caller who stops early (the memory cap) leaves the rest undecoded.
    """
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield _load_one(job)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        queue = iter(jobs)
        pending = deque(pool.submit(_load_one, job) for job in islice(queue, 4 * workers))
        try:
            while pending:
                outcome = pending.popleft().result()
                following = next(queue, None)
                if following is not None:
                    pending.append(pool.submit(_load_one, following))
                yield outcome
        finally:
            for future in pending:
                future.cancel()


def load_corpus(
    files: Sequence[Path],
    cache_dir: Path,
    frontend: FrontendConfig,
    max_seconds: float | None = 90.0,
    seed: int = 0,
    workers: int = 1,
    progress: Progress | None = None,
    within_s: Mapping[Path, float] | None = None,
    max_bytes: int | None = None,
) -> Corpus:
    """Decode (or read from the cache) every file's excerpt; ``workers`` processes.

    ``within_s`` maps files to the seconds (from the start) their excerpt should
    stay within where possible: what a teacher cache covers. With ``max_bytes``,
    files are taken in :func:`budget_order` until the spectrograms kept reach it;
    the rest are counted in ``left_out``. Tracks come back sorted by path either way.
    """
    within_s = within_s or {}
    order = budget_order(files, seed) if max_bytes else list(files)
    jobs = [
        (Path(f), Path(cache_dir), frontend, max_seconds, seed, within_s.get(Path(f)))
        for f in order
    ]
    corpus = Corpus(tracks=[])
    raw = _outcomes(jobs, workers)
    outcomes = progress(raw, total=len(jobs)) if progress else raw
    held = taken = 0
    try:
        for path, spec, offset, duration, error in outcomes:
            taken += 1
            if error is not None:
                corpus.failed.append((path, error))
            else:
                corpus.tracks.append(UnlabelledTrack(path, spec, offset, duration))
                held += spec.nbytes
            if max_bytes and held >= max_bytes:
                break
    finally:
        raw.close()  # cancels what the workers have not started: it will not be used
        if outcomes is not raw and hasattr(outcomes, "close"):
            outcomes.close()
    corpus.left_out = len(jobs) - taken
    corpus.tracks.sort(key=lambda track: track.path)
    corpus.failed.sort(key=lambda item: item[0])
    return corpus
