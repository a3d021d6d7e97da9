"""Choosing the analysis budget: what analysing at most N s per track costs in quality.

For one folder of albums (one sub-folder per album, e.g. bench/gamemusic.py's
output), ``sonic ingest`` runs once with ``--analysis full`` and once per budget,
each into its own fresh data directory, with the same options otherwise. Then, from
the catalogs themselves (the embeddings search uses, the genres browse shows):

- same-album precision@5 over the stored track embeddings, computed by
  ``embeddings.training.similarity_metrics.precision_at_k`` as ``sonic evaluate-similarity``
  does, for all albums and for the held-out ones of bench/gamemusic_split.json;
- genre agreement with full analysis: the share of tracks whose top genre is the
  same as under ``--analysis full``;
- the embedding cosine to full analysis (median and minimum);
- the ingest's wall time and audio-minutes per wall-minute.

    python bench/budget.py /work/data/gamemusic --budgets 30,45,60,90
    python bench/budget.py /tmp/corpus --budgets 60 --json
    python bench/budget.py FOLDER --budgets 60 --data-root /tmp/budget   # keep, resume

With ``--data-root`` the catalogs are kept there; a re-run resumes them (ingest
skips what is done, so its wall time then covers only the rest) and reuses an
existing ``full`` catalog without ingesting again, so several budgets can be run
side by side against one full analysis.

Heatmaps are off unless ``--heatmaps`` (they do not change the embeddings or
genres, only the time).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from embeddings.training.similarity_metrics import precision_at_k  # noqa: E402

SPLIT = Path(__file__).with_name("gamemusic_split.json")


def ingest(folder: Path, data_dir: Path, analysis: str, heatmaps: bool) -> dict:
    cmd = [sys.executable, "-m", "ui.cli", "ingest", str(folder), "--data-dir", str(data_dir),
           "--json", "--no-progress", "--analysis", analysis, "--nice", "0"]  # fmt: skip
    if not heatmaps:
        cmd.append("--no-heatmaps")
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"ingest failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    return {"wall_s": wall, "audio_min": summary["audio_hours"] * 60,
            "analysed": summary["analysed"], "failed": len(summary["failed"])}  # fmt: skip


def catalog_tracks(data_dir: Path, root: Path) -> dict[str, tuple[str, str, np.ndarray]]:
    """path -> (album, genre, embedding) of every indexed track."""
    with sqlite3.connect(data_dir / "catalog.db") as db:
        rows = db.execute(
            "select path, genre, embedding from tracks where status = 'ok' "
            "and embedding is not null"
        ).fetchall()
    out = {}
    for path, genre, blob in rows:
        album = Path(path).resolve().relative_to(root.resolve()).parts[0]
        out[path] = (album, genre, np.frombuffer(blob, dtype=np.float32))
    return out


def scores(tracks: dict, reference: dict, heldout: set[str]) -> dict:
    paths = sorted(set(tracks) & set(reference))
    albums = [tracks[p][0] for p in paths]
    vectors = np.stack([tracks[p][2] for p in paths])
    result = {"tracks": len(paths), "precision_at_5": float(precision_at_k(vectors, albums).mean())}
    held = [i for i, a in enumerate(albums) if a in heldout]
    if len(held) > 5:
        labels = [albums[i] for i in held]
        result["precision_at_5_heldout"] = float(precision_at_k(vectors[held], labels).mean())
    same = [tracks[p][1] == reference[p][1] for p in paths]
    cos = [float(tracks[p][2] @ reference[p][2]) for p in paths]
    result.update(genre_agreement=float(np.mean(same)), cosine_median=float(np.median(cos)),
                  cosine_min=float(np.min(cos)))  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="one sub-folder per album")
    parser.add_argument("--budgets", default="30,45,60,90", help="seconds, comma-separated")
    parser.add_argument("--heatmaps", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--data-root", type=Path, help="keep the catalogs here (resumable)")
    args = parser.parse_args()
    heldout = set(json.loads(SPLIT.read_text())["heldout"]) if SPLIT.exists() else set()
    settings = ["full"] + [b.strip() for b in args.budgets.split(",") if b.strip()]
    runs, tracks = {}, {}
    with tempfile.TemporaryDirectory(prefix="sonic-budget-") as tmp:
        root = args.data_root or Path(tmp)
        for setting in settings:
            data_dir = root / setting
            if setting == "full" and args.data_root and (data_dir / "catalog.db").exists():
                runs[setting] = {"wall_s": float("nan"), "audio_min": float("nan"),
                                 "reused": True}  # fmt: skip
            else:
                runs[setting] = ingest(args.folder, data_dir, setting, args.heatmaps)
            tracks[setting] = catalog_tracks(data_dir, args.folder)
    for setting in settings:
        runs[setting].update(scores(tracks[setting], tracks["full"], heldout))
        run = runs[setting]
        run["audio_min_per_wall_min"] = run["audio_min"] / (run["wall_s"] / 60)
    if args.json:
        print(json.dumps(runs, indent=2))
        return
    print(f"{args.folder}: {runs['full']['tracks']} tracks, {runs['full']['audio_min']:.1f} min")
    print("analysis  wall s  audio-min/min  P@5 all  P@5 held-out  genre = full  cos med  cos min")
    for setting, r in runs.items():
        held = r.get("precision_at_5_heldout")
        print(f"{setting:>8}  {r['wall_s']:6.1f}  {r['audio_min_per_wall_min']:13.0f}  "
              f"{r['precision_at_5']:7.3f}  {held if held is None else f'{held:12.3f}'}  "
              f"{r['genre_agreement']:12.1%}  {r['cosine_median']:7.4f}  "
              f"{r['cosine_min']:7.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
