"""Ingest benchmark: full pipeline against its parts, on the same files, in one run.

Measures, on one folder of audio:
  1. decode-only: decode + resample to 22,050 Hz mono, one process, file after file;
  2. features: log-mel of every segment (timed apart from decoding, same pass);
  3. model-only: the network over those same precomputed features at the best batch size;
  4. full ingest: ``sonic ingest`` in a fresh process on a fresh data directory,
     with the peak RSS of its whole process tree (main process + decode workers);
  5. the same ingest with ``--no-heatmaps``, for the cost of Grad-CAM;
  6. with ``--peer``: ``sonic ingest`` (defaults) and bliss-audio 0.1.6 (bench/bliss_peer.py,
     in its own virtual environment, two processes) on the same files in the same
     run, alternating which goes first, ``--repeats`` times: median wall, CPU
     seconds and peak RSS of each, and our throughput divided by bliss's.
and prints tracks/minute, audio-hours/minute and the ratios the targets are set in.

    python bench/corpus.py /tmp/corpus --tracks 200 --seconds 180 --format mp3
    python bench/ingest.py /tmp/corpus
    python bench/ingest.py /work/data/gamemusic --peer-only            # against bliss
    python bench/ingest.py /work/data/gamemusic --peer-only --avx2     # AVX-512 off

``--avx2`` runs our ingest with oneDNN, MKL and PyTorch's kernels held to AVX2
(ONEDNN_MAX_CPU_ISA=AVX2, MKL_ENABLE_INSTRUCTIONS=AVX2, ATEN_CPU_CAPABILITY=avx2),
the nearest this CPU gets to the AVX2-only machines most people own.
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

from procs import PeakRss, run_measured  # noqa: E402  (bench/procs.py, beside this script)

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


AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
            "ATEN_CPU_CAPABILITY": "avx2"}  # fmt: skip
BLISS_PYTHON = Path("/work/venvs/bliss/bin/python")


# what any earlier ingest into a catalog leaves: the shipped checkpoint remembered,
# so the ingest plans with a LazyModel (in the tree's own code, whatever it keeps)
_KNOWN_MODEL = """
import sys, warnings
from pathlib import Path
from catalog.store import Catalog
from embeddings.checkpoint import load_model
from embeddings.model_handle import DEFAULT_CHECKPOINT, ModelIdentity
warnings.simplefilter("ignore")
with Catalog(Path(sys.argv[1])) as catalog:
    catalog.remember_checkpoint(DEFAULT_CHECKPOINT, ModelIdentity.of(load_model()).to_dict())
"""


def _ours(
    folder: Path, extra: list[str], env: dict, tree: Path = REPO, first: Path | None = None,
    known_model: bool = False,
) -> dict:  # fmt: skip
    """``sonic ingest`` with its defaults, but at the peer's CPU priority (``--nice 0``).

    Its default ``--nice 10`` yields the CPU to everything else, the peer included,
    which on a shared machine would measure the other work rather than the ingest.
    ``tree``: the source tree to run (``--baseline-tree``: another checkout, imported
    through PYTHONPATH); ``first``: a folder before it there (``--pythonpath``). Every
    process of the ingest's tree is checked for the ``--avx2`` caps in its environment,
    and the ingest reports PyTorch's own kernel choice (``cpu_capability``), so a cap
    that did not arrive shows. ``known_model``: the catalog starts out knowing the
    shipped checkpoint (``--known-model``), as for every ingest into it but the first.
    """
    env = {**env, "PYTHONPATH": os.pathsep.join(str(p) for p in (first, tree) if p)}
    with tempfile.TemporaryDirectory(prefix="sonic-bench-") as data_dir:
        if known_model:  # before the measured command, in the tree's own code
            subprocess.run([sys.executable, "-c", _KNOWN_MODEL, data_dir], cwd=tree, env=env,
                           check=True, capture_output=True)  # fmt: skip
        cmd = [sys.executable, "-m", "ui.cli", "ingest", str(folder), "--data-dir", data_dir,
               "--json", "--no-progress", "--nice", "0", *extra]  # fmt: skip
        run = run_measured(cmd, cwd=tree, env=env, env_keys=tuple(AVX2_ENV))
    if run.returncode != 0:
        raise SystemExit(f"ingest failed ({run.returncode}): {run.stderr[-2000:]}")
    summary = json.loads(run.stdout)
    capped = sum(all(e.get(k) == v for k, v in AVX2_ENV.items()) for e in run.environments.values())
    return {"wall_s": run.wall_s, "cpu_s": run.cpu_s, "peak_rss_bytes": run.peak_rss_bytes,
            "analysed": summary["analysed"], "audio_min": summary["audio_hours"] * 60,
            "inference": summary["inference"], "analysis": summary.get("analysis"),
            "cpu_capability": summary.get("cpu_capability"),
            "processes_seen": len(run.environments), "processes_capped": capped}  # fmt: skip


def torch_capability(env: dict) -> str:
    """``torch.backends.cpu.get_cpu_capability()`` in a fresh process with ``env``."""
    probe = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    return out.stdout.strip() or f"unknown ({out.stderr.strip()[-200:]})"


def _bliss(files: list[Path], python: Path, processes: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as listing:
        listing.write("".join(f"{f}\n" for f in files))
        listing.flush()
        cmd = [str(python), str(REPO / "bench" / "bliss_peer.py"), listing.name,
               "--processes", str(processes)]  # fmt: skip
        run = run_measured(cmd)
    if run.returncode != 0:
        raise SystemExit(f"bliss failed ({run.returncode}): {run.stderr[-2000:]}")
    inner = json.loads(run.stdout)
    return {"wall_s": run.wall_s, "cpu_s": run.cpu_s, "peak_rss_bytes": run.peak_rss_bytes,
            "analysed": inner["analysed"], "failed": inner["failed"]}  # fmt: skip


def peer_comparison(folder: Path, files: list[Path], args) -> dict:
    """Ours and bliss on the same files, alternating, ``args.repeats`` times; medians."""
    env = {**os.environ, **(AVX2_ENV if args.avx2 else {})}
    contenders = ["ours", "bliss"] + (["base"] if args.baseline_tree else [])
    runs: dict[str, list[dict]] = {who: [] for who in contenders}
    for r in range(args.repeats):
        k = r % len(contenders)
        order = contenders[k:] + contenders[:k]  # each goes first in turn
        for who in order if r % 2 == 0 else order[::-1]:
            if who == "ours":
                runs["ours"].append(_ours(folder, args.ingest_arg, env, first=args.pythonpath,
                                          known_model=args.known_model))  # fmt: skip
            elif who == "base":
                base_args = args.ingest_arg if args.baseline_arg is None else args.baseline_arg
                runs["base"].append(
                    _ours(folder, base_args, env, args.baseline_tree, args.pythonpath,
                          args.known_model)  # fmt: skip
                )
            else:
                runs["bliss"].append(_bliss(files, args.bliss_python, args.bliss_processes))
    med = {who: {k: float(np.median([x[k] for x in rs])) for k in ("wall_s", "cpu_s",
                 "peak_rss_bytes")} for who, rs in runs.items()}  # fmt: skip
    audio_min = runs["ours"][0]["audio_min"]
    result = {
        "peer": "bliss-audio 0.1.6", "repeats": args.repeats, "avx2_only": args.avx2,
        "ingest_args": args.ingest_arg, "baseline_args": args.baseline_arg,
        "pythonpath": str(args.pythonpath) if args.pythonpath else None,
        "known_model": args.known_model, "files": len(files), "audio_min": audio_min,
        "inference": runs["ours"][0]["inference"], "analysis": runs["ours"][0]["analysis"],
        "torch_capability_fresh_process": torch_capability(env),
        "ours": med["ours"], "bliss": med["bliss"], "runs": runs,
        "throughput_ratio": med["bliss"]["wall_s"] / med["ours"]["wall_s"],
        "cpu_ratio": med["bliss"]["cpu_s"] / med["ours"]["cpu_s"],
    }  # fmt: skip
    if args.baseline_tree:
        result.update(base=med["base"], baseline_tree=str(args.baseline_tree),
                      base_throughput_ratio=med["bliss"]["wall_s"] / med["base"]["wall_s"],
                      base_cpu_ratio=med["bliss"]["cpu_s"] / med["base"]["cpu_s"])  # fmt: skip
    if args.avx2:
        uncapped = [(who, r["cpu_capability"], r["processes_seen"] - r["processes_capped"])
                    for who in ("ours", "base") for r in runs.get(who, [])
                    if r["cpu_capability"] not in (None, "AVX2")
                    or r["processes_capped"] < r["processes_seen"]]  # fmt: skip
        if uncapped:
            print(f"warning: --avx2 did not cap every run (who, capability, uncapped): {uncapped}",
                  file=sys.stderr)  # fmt: skip
    return result


def print_peer(result: dict) -> None:
    print(f"{result['files']} files, {result['audio_min']:.1f} audio-min; median of "
          f"{result['repeats']}, alternating; AVX2 only: {result['avx2_only']}")  # fmt: skip
    print(f"ours: {result['inference']}; analysis: {result['analysis']}")
    first = result["runs"]["ours"][0]
    print(f"PyTorch kernels: {first['cpu_capability']} in the ingest, "
          f"{result['torch_capability_fresh_process']} in a fresh process; AVX2 caps in the "
          f"environment of {first['processes_capped']} of {first['processes_seen']} "
          "processes of the ingest's tree")  # fmt: skip
    for who in ("ours", "base", "bliss"):
        if who not in result:
            continue
        m = result[who]
        print(
            f"{who:>6}: wall {m['wall_s']:6.1f} s  {result['audio_min'] / (m['wall_s'] / 60):6.0f} "
            f"audio-min/min  CPU {m['cpu_s']:6.1f} s  peak RSS {m['peak_rss_bytes'] / 1e9:.2f} GB"
        )
    print(f"throughput ours / bliss: {result['throughput_ratio']:.2f}x by wall time, "
          f"{result['cpu_ratio']:.2f}x by CPU seconds")  # fmt: skip
    if "base" in result:
        print(f"baseline tree {result['baseline_tree']} / bliss: "
              f"{result['base_throughput_ratio']:.2f}x by wall, "
              f"{result['base_cpu_ratio']:.2f}x by CPU")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--workers", type=int, default=None, help="passed to sonic ingest")
    parser.add_argument("--batch-sizes", default="16,32,64,128")
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON")
    parser.add_argument("--peer", action="store_true", help="also compare with bliss-audio")
    parser.add_argument("--peer-only", action="store_true", help="only the bliss comparison")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bliss-python", type=Path, default=BLISS_PYTHON)
    parser.add_argument("--bliss-processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--avx2", action="store_true", help="hold our ingest to AVX2 kernels")
    parser.add_argument("--baseline-tree", type=Path, default=None,
                        help="with --peer: also run this checkout's ingest (e.g. /work/main), "
                        "alternating with ours and the peer")  # fmt: skip
    parser.add_argument("--ingest-arg", action="append", default=[],
                        help="extra argument for sonic ingest (repeatable)")  # fmt: skip
    parser.add_argument("--baseline-arg", action="append", default=None,
                        help="with --baseline-tree: extra argument for the baseline's ingest "
                        "instead of --ingest-arg (repeatable; e.g. the same tree, another "
                        "--precision)")  # fmt: skip
    parser.add_argument("--known-model", action="store_true",
                        help="each ingest's catalog already knows the shipped checkpoint, as "
                        "for every ingest into a catalog but its first")  # fmt: skip
    parser.add_argument("--pythonpath", type=Path, default=None,
                        help="put this folder first on every ingest's PYTHONPATH (e.g. the "
                        "AVX2-capped ONNX Runtime of bench/ort_avx2.py)")  # fmt: skip
    args = parser.parse_args()

    files = list(iter_audio_files([args.folder]))
    if not files:
        raise SystemExit(f"no audio files under {args.folder}")
    peer = peer_comparison(args.folder, files, args) if args.peer or args.peer_only else None
    if args.peer_only:
        print(json.dumps(peer, indent=2)) if args.json else print_peer(peer)
        return
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
    if peer is not None:
        result["peer"] = peer
    if args.json:
        print(json.dumps(result, indent=2))
        return
    if peer is not None:
        print_peer(peer)
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
