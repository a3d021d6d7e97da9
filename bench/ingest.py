"""Ingest benchmark: full pipeline against its parts, on the same files, in one run.

Measures, on one folder of audio:
  1. decode-only: decode + resample to 22,050 Hz mono, one process, file after file;
  2. features: log-mel of every segment (timed apart from decoding, same pass);
  3. model-only: the network over those same precomputed features at the best batch size;
  4. full ingest: ``sonic ingest`` in a fresh process on a fresh data directory,
     with the peak RSS of its whole process tree (main process + decode workers);
  5. the same ingest with ``--no-heatmaps``, for the cost of Grad-CAM.
and prints tracks/minute, audio-hours/minute and the ratios the targets are set in.

    python bench/corpus.py /tmp/corpus --tracks 200 --seconds 180 --format mp3
    python bench/ingest.py /tmp/corpus
"""

from __future__ import annotations

import argparse
import json
import os

# NumPy's BLAS threads fight the network for the cores: the ingest workers run with
# one each, and so does the feature baseline here (set before NumPy is imported).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from procs import PeakRss  # noqa: E402  (bench/procs.py, beside this script)

from embeddings.audio import open_audio  # noqa: E402
from embeddings.checkpoint import load_default_model  # noqa: E402
from embeddings.frontend import StreamingSegmenter, batch_features  # noqa: E402
from embeddings.inference import Predictor  # noqa: E402
from ingest.scan import iter_audio_files  # noqa: E402


def decode_and_features(files: list[Path], config, cache: Path) -> dict:
    """One process, file after file; decoding and feature time kept apart."""
    decode_s = features_s = audio_s = 0.0
    chunks: list[np.ndarray] = []
    for path in files:
        t0 = time.perf_counter()
        stream = open_audio(path, config.sample_rate)
        segmenter = StreamingSegmenter(config)
        segments: list[np.ndarray] = []
        for block in stream.blocks:
            segments.append(segmenter.push(block))
        segments.append(segmenter.finish())
        t1 = time.perf_counter()
        chunks.append(batch_features(np.concatenate(segments), config).astype(np.float16))
        t2 = time.perf_counter()
        decode_s += t1 - t0
        features_s += t2 - t1
        audio_s += stream.decoded_seconds
    features = np.concatenate(chunks)
    np.save(cache, features)
    return {"decode_s": decode_s, "features_s": features_s, "audio_s": audio_s,
            "segments": len(features)}  # fmt: skip


def model_only(cache: Path, batch_sizes: list[int]) -> dict:
    """Forward passes over the cached features, at the fastest batch size found."""
    features = np.load(cache, mmap_mode="r")
    predictor = Predictor(load_default_model())
    probe = np.asarray(features[:256], dtype=np.float32)
    predictor.predict(probe[:16])  # warm-up: oneDNN primitive creation
    rates = {}
    for bs in batch_sizes:
        t0 = time.perf_counter()
        for start in range(0, len(probe), bs):
            predictor.predict(probe[start : start + bs])
        rates[bs] = len(probe) / (time.perf_counter() - t0)
    best = max(rates, key=rates.get)
    t0 = time.perf_counter()
    for start in range(0, len(features), best):
        predictor.predict(np.asarray(features[start : start + best], dtype=np.float32))
    return {"model_s": time.perf_counter() - t0, "batch_size": best,
            "probe_segments_per_s": rates, "precision": str(predictor.dtype)}  # fmt: skip


def full_ingest(folder: Path, workers: int | None, heatmaps: bool = True) -> dict:
    with tempfile.TemporaryDirectory(prefix="sonic-bench-") as data_dir:
        cmd = [sys.executable, "-m", "ui.cli", "ingest", str(folder), "--data-dir", data_dir,
               "--json", "--no-progress"]  # fmt: skip
        if workers:
            cmd += ["--workers", str(workers)]
        if not heatmaps:
            cmd.append("--no-heatmaps")
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        monitor = PeakRss(proc.pid)
        monitor.start()
        out, err = proc.communicate()
        wall = time.perf_counter() - t0
        peak = monitor.stop()
    if proc.returncode != 0:
        raise SystemExit(f"ingest failed ({proc.returncode}): {err.decode()[-2000:]}")
    summary = json.loads(out)
    return {"ingest_process_s": wall, "ingest_pipeline_s": summary["wall_seconds"],
            "peak_rss_bytes": peak, "analysed": summary["analysed"],
            "failed": len(summary["failed"])}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--workers", type=int, default=None, help="passed to sonic ingest")
    parser.add_argument("--batch-sizes", default="16,32,64,128")
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON")
    args = parser.parse_args()

    files = list(iter_audio_files([args.folder]))
    if not files:
        raise SystemExit(f"no audio files under {args.folder}")
    config = load_default_model().frontend
    with tempfile.TemporaryDirectory(prefix="sonic-bench-features-") as tmp:
        cache = Path(tmp) / "features.npy"
        parts = decode_and_features(files, config, cache)
        parts.update(model_only(cache, [int(b) for b in args.batch_sizes.split(",")]))
    parts.update(full_ingest(args.folder, args.workers))
    bare = full_ingest(args.folder, args.workers, heatmaps=False)
    parts["ingest_no_heatmaps_process_s"] = bare["ingest_process_s"]
    parts["ingest_no_heatmaps_pipeline_s"] = bare["ingest_pipeline_s"]

    n, hours = len(files), parts["audio_s"] / 3600
    full = parts["ingest_process_s"]
    baseline = parts["decode_s"] + parts["model_s"]
    result = {
        "files": n,
        "audio_hours": hours,
        "cpu_count": os.cpu_count(),
        **parts,
        "tracks_per_min_full": n / (full / 60),
        "tracks_per_min_pipeline": n / (parts["ingest_pipeline_s"] / 60),
        "audio_hours_per_min_full": hours / (full / 60),
        "tracks_per_min_decode_only": n / (parts["decode_s"] / 60),
        "ratio_full_to_decode": full / parts["decode_s"],
        "ratio_full_to_decode_plus_model": full / baseline,
        "ratio_pipeline_to_decode_plus_model": parts["ingest_pipeline_s"] / baseline,
        "peak_rss_gib": parts["peak_rss_bytes"] / 2**30,
        "heatmap_overhead": parts["ingest_pipeline_s"] / parts["ingest_no_heatmaps_pipeline_s"] - 1,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"files {n}, audio {hours:.2f} h, {os.cpu_count()} CPUs")
    print(
        f"decode-only (1 process)  {parts['decode_s']:8.1f} s  "
        f"{result['tracks_per_min_decode_only']:7.1f} tracks/min"
    )
    print(f"features (1 process)     {parts['features_s']:8.1f} s")
    print(
        f"model-only (batch {parts['batch_size']:>3})   {parts['model_s']:8.1f} s  "
        f"{parts['segments'] / parts['model_s']:7.1f} segments/s ({parts['precision']})"
    )
    print(
        f"full ingest (process)    {full:8.1f} s  {result['tracks_per_min_full']:7.1f} tracks/min, "
        f"{result['audio_hours_per_min_full']:.2f} audio-h/min"
    )
    print(
        f"full ingest (pipeline)   {parts['ingest_pipeline_s']:8.1f} s  "
        f"{result['tracks_per_min_pipeline']:7.1f} tracks/min (excludes start-up)"
    )
    print(f"full / decode-only               {result['ratio_full_to_decode']:.2f}x")
    print(f"full / (decode-only + model)     {result['ratio_full_to_decode_plus_model']:.2f}x")
    print(f"peak RSS (ingest process tree)   {result['peak_rss_gib']:.2f} GiB")
    print(
        f"without heatmaps (pipeline)      {parts['ingest_no_heatmaps_pipeline_s']:.1f} s; "
        f"heatmaps add {result['heatmap_overhead']:+.0%}"
    )
    if parts["failed"]:
        print(f"warning: {parts['failed']} files failed during ingest")


if __name__ == "__main__":
    main()
