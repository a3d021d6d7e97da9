"""Compare the methods of one ``sonic evaluate-similarity --json`` run track by track.

Every method in one run is scored on the same query tracks, and ``per_track`` keeps
each track's precision@k in the same order. The difference between two methods,
track by track, with a bootstrap interval over the tracks, resolves smaller
differences than the methods' separate intervals. Methods without per-track
scores (the averaged random networks) are skipped.

    python docs/research/scripts/paired_similarity.py \\
        docs/runs/similarity-heldout-round3.json --reference shipped

``--albums A,B`` keeps only the query tracks of those albums (their neighbours
were still searched among all the run's tracks), to see whether a difference
holds on part of the set, for example on soundtracks added after a decision.
Albums are the ``track_albums`` the run recorded (the sub-folder each track was
scored as part of). Results written before that field existed fall back to the
folder holding each file of ``track_files``, which are resolved paths: for a
folder of links, the links' targets' folder (in ``bench/gamemusic.py``'s views,
the soundtrack's own name).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository

from embeddings.training.similarity_metrics import paired_difference  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("result", type=Path, help="JSON written by evaluate-similarity --json")
    parser.add_argument(
        "--reference",
        default=None,
        help="the method to subtract: the start of its name (default: the first method)",
    )
    parser.add_argument(
        "--albums",
        default=None,
        help="comma-separated album (folder) names: only their query tracks",
    )
    args = parser.parse_args(argv)
    result = json.loads(args.result.read_text())
    methods = [m for m in result["methods"] if "per_track" in m]
    if not methods:
        print("no method with per-track scores in this result", file=sys.stderr)
        return 1
    matches = [m for m in methods if args.reference is None or m["name"].startswith(args.reference)]
    if not matches:
        names = ", ".join(m["name"] for m in methods)
        print(f"no method named {args.reference!r}*; methods: {names}", file=sys.stderr)
        return 1
    albums = np.array(
        result.get("track_albums") or [Path(f).parent.name for f in result["track_files"]]
    )
    keep = np.ones(len(albums), dtype=bool)
    if args.albums:
        wanted = set(args.albums.split(","))
        unknown = wanted - set(albums)
        if unknown:
            print(f"no such album in this result: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 1
        keep = np.isin(albums, sorted(wanted))
    reference = matches[0]
    base = np.array(reference["per_track"])[keep]
    print(f"minus {reference['name']} ({base.mean():.3f}), paired over {len(base)} tracks")
    width = max(len(m["name"]) for m in methods)
    for method in methods:
        if method is reference:
            continue
        scores = np.array(method["per_track"])[keep]
        mean, low, high = paired_difference(scores, base)
        print(
            f"{method['name']:<{width}}  {scores.mean():.3f}  {mean:+.3f}"
            f"  (95% interval {low:+.3f} to {high:+.3f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
