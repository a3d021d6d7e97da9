"""How well a cached teacher finds same-album tracks, per layer, without decoding audio.

DIR holds one folder per album or soundtrack; each track's embedding is the mean
of its cached windows for one layer; the score is same-album precision@5 (cosine),
the measure of ``sonic evaluate-similarity``, with the same statistics
(``embeddings/training/similarity_metrics.py``). ``sonic evaluate-similarity
--teacher-cache`` scores a teacher beside the models on decoded audio; this is
the quick look at a cache's layers, and runs in the musicnn environment too.

    python tools/teacher_score.py /work/data/gamemusic-heldout \\
        --cache /work/data/teacher_musicnn --layer penultimate --layer taggram
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

# the cache files of every teacher (it also puts the repository on sys.path)
from teacher_files import audio_files, read_index

from embeddings.training.similarity_metrics import (  # numpy only, like this script
    chance_and_ceiling,
    precision_at_k,
)

K = 5


def albums(folder: Path) -> Iterator[tuple[str, Path]]:
    """(album, resolved track path) for each audio file under each subfolder of ``folder``."""
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in audio_files([sub]):
            yield sub.name, path


def score(folder: Path, cache: Path, layers: Sequence[str]) -> dict[str, float]:
    """Same-album precision@5 of each cached layer (track = mean of its windows)."""
    index = read_index(cache)
    names, vectors, missing = [], {layer: [] for layer in layers}, []
    for album, path in albums(folder):
        entry = index.get(str(path))
        if not entry or not (cache / entry).exists():
            missing.append(path)
            continue
        with np.load(cache / entry) as data:
            for layer in layers:
                vectors[layer].append(data[layer].astype(np.float32).mean(axis=0))
        names.append(album)
    if missing:
        print(
            f"{len(missing)} tracks under {folder} have no cached outputs, left out "
            f"(first: {missing[0]})",
            file=sys.stderr,
        )
    if len(names) < 2:
        raise SystemExit(f"fewer than two tracks under {folder} are in the cache {cache}")
    labels = np.array(names)
    counts = {a: int((labels == a).sum()) for a in sorted(set(names))}
    print(
        f"{len(names)} tracks in {len(counts)} albums: "
        + ", ".join(f"{a} {n}" for a, n in counts.items())
    )
    results = {
        layer: float(precision_at_k(np.stack(v), labels, K).mean()) for layer, v in vectors.items()
    }
    chance, _ = chance_and_ceiling(labels, K)  # a random ranking: the share of same-album pairs
    print(f"same-album precision@{K} (mean of windows, L2-normalised, cosine):")
    for layer, value in results.items():
        print(f"  {layer:<12} {value:.3f}")
    print(f"  {'chance':<12} {chance:.3f}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="one folder per album")
    parser.add_argument("--cache", type=Path, required=True, help="the teacher cache")
    parser.add_argument(
        "--layer", action="append", required=True, help="a cached array to score (repeatable)"
    )
    args = parser.parse_args(argv)
    score(args.dir, args.cache, args.layer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
