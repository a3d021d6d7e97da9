"""The analysis budget simulated on a full analysis: many budgets and window shapes at once.

bench/budget.py measures a budget by ingesting again, which on a shared 2-core
machine takes tens of minutes per setting. This script answers "which budget and
which window length" from one catalog made with ``--analysis full``: it keeps, per
track, only the stored segments that the windows of a budget would cover
(:func:`embeddings.windows.analysis_windows`, window starts rounded to the segment
grid of the full analysis), and recomputes from them

- the top genre of the mean of their probabilities (as ingest aggregates), against
  the full analysis' genre;
- same-album precision@5 of the mean of their stored segment embeddings (the
  catalog's 128-d random projections of the 512-d vectors: a linear map, so the
  mean of projections is the projection of the mean), beside the same measure over
  all segments.

It is a simulation: real windows start off the 3-s grid and are resampled afresh,
so bench/budget.py's measured figures are the ones to quote for the chosen budget.

    python bench/budget_sim.py /tmp/budget/full /work/data/gamemusic --budgets 30,60,90,120 \\
        --window-segments 1,2,4
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from embeddings.training.similarity_metrics import precision_at_k  # noqa: E402
from embeddings.windows import analysis_windows  # noqa: E402


def load(data_dir: Path, root: Path) -> list[dict]:
    with sqlite3.connect(data_dir / "catalog.db") as db:
        tracks = db.execute(
            "select id, path, genre, duration_s from tracks where status = 'ok'"
        ).fetchall()
        out = []
        for track_id, path, genre, duration in tracks:
            rows = db.execute(
                "select probabilities, embedding from segments where track_id = ? order by idx",
                (track_id,),
            ).fetchall()
            probs = np.stack([np.frombuffer(p, dtype=np.float32) for p, _ in rows])
            embs = np.stack([np.frombuffer(e, dtype=np.float16).astype(np.float32)
                             for _, e in rows])  # fmt: skip
            album = Path(path).resolve().relative_to(root.resolve()).parts[0]
            out.append({"album": album, "genre": genre, "duration": duration,
                        "probs": probs, "embs": embs})  # fmt: skip
    return out


def chosen(track: dict, budget: float | None, window_segments: int) -> np.ndarray:
    """Indices of the full analysis' segments that the budget's windows would cover."""
    n = len(track["probs"])
    windows = analysis_windows(track["duration"], budget, 3.0, window_segments)
    if windows is None:
        return np.arange(n)
    picked = []
    for w in windows:
        first = min(int(round(w.start_s / 3.0)), n - 1)
        picked.extend(range(first, min(n, first + int(round(w.length_s / 3.0)))))
    return np.unique(picked)


def evaluate(tracks: list[dict], budget: float | None, window_segments: int) -> dict:
    genres, vectors, fraction = [], [], []
    for t in tracks:
        keep = chosen(t, budget, window_segments)
        fraction.append(len(keep) / len(t["probs"]))
        genres.append(int(np.argmax(t["probs"][keep].mean(axis=0))))
        v = t["embs"][keep].mean(axis=0)
        vectors.append(v / max(np.linalg.norm(v), 1e-12))
    full_genres = [int(np.argmax(t["probs"].mean(axis=0))) for t in tracks]
    albums = [t["album"] for t in tracks]
    return {
        "genre_agreement": float(np.mean(np.array(genres) == np.array(full_genres))),
        "precision_at_5": float(precision_at_k(np.stack(vectors), albums).mean()),
        "analysed_fraction": float(np.mean(fraction)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("full_data_dir", type=Path, help="a data dir ingested with --analysis full")
    parser.add_argument("root", type=Path, help="the folder of albums it was ingested from")
    parser.add_argument("--budgets", default="30,45,60,90,120")
    parser.add_argument("--window-segments", default="1,2,4")
    args = parser.parse_args()
    tracks = load(args.full_data_dir, args.root)
    full = evaluate(tracks, None, 4)
    print(f"{len(tracks)} tracks; full analysis: P@5 (128-d projections) "
          f"{full['precision_at_5']:.3f}")  # fmt: skip
    print("budget  window  analysed  genre = full  P@5")
    for budget in [float(b) for b in args.budgets.split(",")]:
        for size in [int(s) for s in args.window_segments.split(",")]:
            r = evaluate(tracks, budget, size)
            print(f"{budget:6g}  {size * 3:4d} s  {r['analysed_fraction']:8.0%}  "
                  f"{r['genre_agreement']:12.1%}  {r['precision_at_5']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
