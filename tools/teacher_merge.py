"""Merge two or more teacher caches into one, so ``sonic pretrain`` distils them together.

Distilling the handcrafted statistics (backbone (j)) moved the embedding towards
what MFCCs describe, which wins on game soundtracks; on the real music kept aside
for judging, musicnn is the stronger neighbour-finder and handcrafted features
the weaker. A student of both keeps the tagger's sense of style and the
statistics' sense of timbre and mix, and this needs no change to the product:
the merged cache is one more folder in the format of ``embeddings/training/teacher.py``.

Each source is ``CACHE:LAYER[:REPEAT]``. The merged layer concatenates, per 3-s
window, the sources' vectors, each repeated ``REPEAT`` times (default 1).
``sonic pretrain`` standardises every dimension and then takes a cosine over all
of them, so a block's weight in the loss is its share of the dimensions:
repeating the 66 handcrafted floats three times weighs them about level with
musicnn's 200 penultimate units.

    python tools/teacher_merge.py --source /work/data/teacher_musicnn:penultimate \\
        --source /work/data/teacher_handcrafted:spectral:3 --out /work/data/teacher_merged

Only tracks in every source are written; their windows must share one hop and
length, and the merged track keeps the windows all sources cover.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# the cache files of every teacher (it also puts the repository on sys.path)
from teacher_files import read_index, write_arrays, write_index

from embeddings.training.teacher import TeacherCache

LAYER = "merged"


@dataclass
class Source:
    cache: TeacherCache
    repeat: int


def parse_source(text: str) -> Source:
    """``CACHE:LAYER[:REPEAT]`` into a readable source (the cache must have an index)."""
    parts = text.rsplit(":", 2)
    if len(parts) == 3 and parts[2].isdigit():
        folder, layer, repeat = parts[0], parts[1], int(parts[2])
    else:
        folder, layer = text.rsplit(":", 1)
        repeat = 1
    if repeat < 1:
        raise argparse.ArgumentTypeError(f"REPEAT must be at least 1 in {text!r}")
    return Source(TeacherCache(Path(folder), layer), repeat)


def merge_track(sources: list[Source], path: Path) -> tuple[np.ndarray, float] | None:
    """The concatenated windows of one track and their length (s), or None if a source lacks it."""
    loaded = [s.cache.load(path) for s in sources]
    if any(item is None for item in loaded):
        return None
    timings = {(hop, window) for _, hop, window in loaded}
    if len(timings) != 1:
        raise ValueError(f"{path}: the sources' windows differ (hop, length): {sorted(timings)}")
    n = min(len(vectors) for vectors, _, _ in loaded)
    blocks = [np.tile(v[:n], (1, s.repeat)) for (v, _, _), s in zip(loaded, sources, strict=True)]
    hop, window = timings.pop()
    if hop != window:
        raise ValueError(f"{path}: overlapping windows (hop {hop} s, length {window} s)")
    return np.concatenate(blocks, axis=1).astype(np.float32), window


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=parse_source, action="append", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if len(args.source) < 2:
        parser.error("give at least two --source caches to merge")
    args.out.mkdir(parents=True, exist_ok=True)
    index = read_index(args.out)
    shared = set.intersection(*(set(s.cache.index) for s in args.source))
    written = 0
    for key in sorted(shared):
        merged = merge_track(args.source, Path(key))
        if merged is None:
            continue
        vectors, window = merged
        name = args.source[0].cache.index[key]
        write_arrays(args.out / name, {LAYER: vectors, "window_seconds": np.array(window)})
        index[key] = name
        written += 1
    write_index(args.out, index)
    print(f"merged {written} of {len(shared)} shared tracks into {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
