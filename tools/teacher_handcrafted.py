"""A handcrafted "teacher": MFCC and spectral statistics per 3-second window, cached.

The fourth round found the handcrafted sound-alike baseline (MFCC + spectral
statistics) ahead of every learnt embedding and of musicnn on the held-out game
soundtracks. Distilling it is an experiment in teaching the network what those
statistics describe (timbre, recording, mix) while contrastive learning keeps
what they miss. Unlike musicnn this teacher needs no second environment and
runs on any audio, a user's own library included.

It writes the cache format of ``embeddings/training/teacher.py`` (``index.json`` plus one
``.npz`` per track, layer ``spectral``: ``handcrafted.spectral_statistics`` of
each non-overlapping 3-s window from the file's start, 66 floats), so ``sonic
pretrain --teacher-cache DIR --teacher-layer spectral`` distils it unchanged.

    python tools/teacher_handcrafted.py /work/data/gamemusic-pretrain \\
        --cache /work/data/teacher_handcrafted --max-seconds 120

Resumable: a track already in the index is skipped.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

# one file walk, naming rule, index and atomic writer for every teacher cache (it also
# puts the repository on sys.path for the imports below)
from teacher_files import audio_files, npz_name, read_index, write_arrays, write_index

from embeddings.training.dataset import load_audio
from embeddings.training.handcrafted import spectral_statistics

LAYER = "spectral"
WINDOW_SECONDS = 3.0
SAMPLE_RATE = 22050


def window_statistics(path: Path, max_seconds: float | None) -> np.ndarray:
    """(n_windows, 66) statistics of the whole 3-s windows from the file's start."""
    audio, _, _ = load_audio(path, SAMPLE_RATE)
    if max_seconds:
        audio = audio[: int(max_seconds * SAMPLE_RATE)]
    step = int(WINDOW_SECONDS * SAMPLE_RATE)
    starts = range(0, len(audio) - step + 1, step)
    return np.stack([spectral_statistics(audio[s : s + step], SAMPLE_RATE) for s in starts])


def analyse(job: tuple[Path, Path, float | None]) -> tuple[str, str | None, str | None]:
    """Write one track's npz; returns (path, npz name or None, error or None)."""
    path, cache, max_seconds = job
    try:
        vectors = window_statistics(path, max_seconds)
    except Exception as exc:  # an undecodable or too-short file is reported, not fatal
        return str(path), None, f"{type(exc).__name__}: {exc}"
    name = npz_name(path)
    arrays = {LAYER: vectors.astype(np.float32), "window_seconds": np.array(WINDOW_SECONDS)}
    write_arrays(cache / name, arrays)
    return str(path), name, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", type=Path, nargs="+")
    parser.add_argument("--cache", type=Path, default=Path("/work/data/teacher_handcrafted"))
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    index = read_index(args.cache)
    files = audio_files(args.dirs)
    todo = [f for f in files if str(f) not in index]
    print(f"{len(files)} files, {len(todo)} to analyse", file=sys.stderr)
    started, failed = time.perf_counter(), 0
    with ProcessPoolExecutor(args.workers) as pool:
        jobs = [(f, args.cache, args.max_seconds) for f in todo]
        for i, (path, name, error) in enumerate(pool.map(analyse, jobs), 1):
            if error:
                failed += 1
                print(f"skipped {path}: {error}", file=sys.stderr)
                continue
            index[path] = name
            if i % 50 == 0 or i == len(todo):
                write_index(args.cache, index)
                print(f"[{i}/{len(todo)}] {time.perf_counter() - started:.0f} s", file=sys.stderr)
    write_index(args.cache, index)
    print(f"done: {len(todo) - failed} analysed, {failed} failed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
