"""Benchmark: our streamed, cached separation against a bare ``apply_model`` call.

For each input length it synthesises a 44.1 kHz stereo WAV, records it in a fresh
catalog, and runs, each in its own process so peak RSS is that run's alone:

* ``ours``: ``ingest.stems.separate_track`` end to end (decode, Demucs, FLAC stems
  written, SQLite record), model loaded beforehand;
* ``bare``: the audio read whole with soundfile and one
  ``demucs.apply.apply_model(model, mix, shifts=1, split=True, overlap=0.25)`` call,
  which is what Demucs' own ``separate`` does (writing files not included);
* ``hit``: ``separate_track`` again on the cached stems (mean of 20 calls, plus the
  first call in a fresh process).

The model is a randomly initialised full-size ``htdemucs`` (same architecture and
kwargs as the released checkpoint, so the same cost) loaded through a local Demucs
model folder with ``get_model("htdemucs", repo=...)``; ``--model tiny`` swaps in a
tiny HTDemucs with the same 7.8 s segment, to measure memory on inputs too long to
separate at full size on a small CPU. Targets: time overhead at most 10% over bare,
peak RSS at 30 min within 20% of 5 min, cache hit under 50 ms.

    python bench/stems.py --seconds 30 300 --threads 1 --json bench-stems.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SOURCES = ["drums", "bass", "other", "vocals"]
# Constructor kwargs of the released htdemucs (955717e8): 41.98 M parameters, 533 tensors.
HTDEMUCS_KWARGS = dict(
    sources=SOURCES, audio_channels=2, samplerate=44100, segment=Fraction(39, 5),
    channels=48, channels_time=None, growth=2, nfft=4096, wiener_iters=0, end_iters=0,
    wiener_residual=False, cac=True, depth=4, rewrite=True, multi_freqs=[],
    multi_freqs_depth=3, freq_emb=0.2, emb_scale=10, emb_smooth=True, kernel_size=8,
    stride=4, time_stride=2, context=1, context_enc=0, norm_starts=4, norm_groups=4,
    dconv_mode=3, dconv_depth=2, dconv_comp=8, dconv_init=1e-3, bottom_channels=512,
    t_layers=5, t_hidden_scale=4.0, t_heads=8, t_dropout=0.02, t_sparse_attn_window=400,
)  # fmt: skip
TINY_KWARGS = dict(
    sources=SOURCES, channels=2, depth=4, nfft=1024, t_layers=1, t_heads=1,
    bottom_channels=0, dconv_comp=1, t_hidden_scale=1.0, segment=Fraction(39, 5),
)  # fmt: skip


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def current_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- setup (parent process) ---------------------------------------------------------------


def build_models_dir(folder: Path, size: str) -> Path:
    """A local Demucs model folder holding a random ``htdemucs``: yaml bag + .th package."""
    import torch
    from demucs.htdemucs import HTDemucs
    from demucs.states import get_state, save_with_checksum

    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "htdemucs.yaml").exists():
        return folder
    torch.manual_seed(0)
    model = HTDemucs(**(HTDEMUCS_KWARGS if size == "full" else TINY_KWARGS))
    args, kwargs = model._init_args_kwargs
    package = {"klass": HTDemucs, "args": args, "kwargs": kwargs, "state": get_state(model, None)}
    save_with_checksum(package, folder / "b3ac4001.th")
    (folder / "htdemucs.yaml").write_text("models: ['b3ac4001']\n")
    return folder


def write_input(path: Path, seconds: float, rate: int = 44100) -> None:
    """Chords, clicks and noise, written block by block (a 30 min file never in memory)."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    block = rate * 10
    with sf.SoundFile(str(path), "w", rate, 2, subtype="PCM_16") as fh:
        for start in range(0, int(seconds * rate), block):
            n = min(block, int(seconds * rate) - start)
            t = (start + np.arange(n)) / rate
            tone = sum(np.sin(2 * np.pi * f * t) for f in (110.0, 277.2, 329.6, 440.0)) / 4
            clicks = ((start + np.arange(n)) % (rate // 2) < 200).astype(float)
            mono = 0.2 * tone + 0.2 * clicks + 0.02 * rng.standard_normal(n)
            fh.write(np.stack([mono, 0.8 * mono + 0.02 * rng.standard_normal(n)], axis=1))


def record_track(data_dir: Path, audio: Path) -> int:
    import numpy as np
    import soundfile as sf

    from catalog.records import Analysis, AudioFacts, FileFacts, Tags
    from catalog.store import Catalog
    from ingest.hashing import content_hash

    stat = audio.stat()
    info = sf.info(str(audio))
    facts = FileFacts(str(audio), stat.st_size, stat.st_mtime_ns, content_hash(audio), "wav")
    analysis = Analysis(
        "bench", ["rock", "jazz"], np.array([0.9, 0.1]), np.full(4, 0.5, np.float32),
        np.zeros((0, 2)), 3.0,
    )  # fmt: skip
    with Catalog(data_dir) as catalog:
        return catalog.record_analysis(
            facts, Tags(), AudioFacts(info.duration, info.samplerate, info.channels), analysis
        )


def run_worker(mode: str, args: argparse.Namespace, audio: Path, data_dir: Path) -> dict:
    command = [
        sys.executable, __file__, "--worker", mode, "--audio", str(audio),
        "--data-dir", str(data_dir), "--models-dir", str(args.models_dir),
        "--threads", str(args.threads), "--device", args.device,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- workers (child processes) ------------------------------------------------------------------


def worker(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from catalog.queries import resolve_track
    from catalog.store import Catalog
    from ingest.stems import StemSeparator, StemSettings, load_demucs_model, separate_track

    settings = StemSettings(model="htdemucs", shifts=1, overlap=0.25, format="flac")
    result: dict = {"mode": args.worker}
    if args.worker == "hit":
        started = time.perf_counter()
        catalog = Catalog(args.data_dir)
        result["catalog_open_s"] = time.perf_counter() - started
        track_id = resolve_track(catalog, str(args.audio))
        separator = StemSeparator(settings, models_dir=args.models_dir, device=args.device)
        timings = []
        for _ in range(21):
            started = time.perf_counter()
            out = separate_track(catalog, track_id, separator)
            timings.append(time.perf_counter() - started)
            assert out.cached
        assert separator._model is None  # the model was never loaded
        result |= {"first_s": timings[0], "mean_s": sum(timings[1:]) / 20, "max_s": max(timings)}
        catalog.close()
        return result
    model = load_demucs_model("htdemucs", args.models_dir)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)  # fmt: skip
    model.to(device)
    result["rss_after_model_mb"] = current_rss_mb()
    if args.worker == "ours":
        catalog = Catalog(args.data_dir)
        track_id = resolve_track(catalog, str(args.audio))
        separator = StemSeparator(settings, device=str(device), model=model)
        started = time.perf_counter()
        out = separate_track(catalog, track_id, separator, force=True)
        result["seconds"] = time.perf_counter() - started
        result["chunks"] = separator.chunks_run
        result["frames"] = out.record.frames
        catalog.close()
    else:
        import soundfile as sf
        from demucs.apply import apply_model

        started = time.perf_counter()
        audio, _ = sf.read(str(args.audio), dtype="float32", always_2d=True)
        mix = torch.from_numpy(audio.T.copy())[None]
        del audio
        read = time.perf_counter() - started
        started = time.perf_counter()
        out = apply_model(model, mix, shifts=1, split=True, overlap=0.25, device=device)
        result["seconds"] = time.perf_counter() - started
        result["read_seconds"] = read
        result["frames"] = out.shape[-1]
    result["peak_rss_mb"] = peak_rss_mb()
    if device.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[30, 300, 1800])
    parser.add_argument("--model", choices=["full", "tiny"], default="full")
    parser.add_argument("--modes", nargs="+", default=["ours", "bare", "hit"])
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="Also write results here.")
    parser.add_argument("--worker", choices=["ours", "bare", "hit"], help=argparse.SUPPRESS)
    parser.add_argument("--audio", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--models-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="sonic-bench-stems-"))
    args.models_dir = build_models_dir(work / f"models-{args.model}", args.model)
    import torch

    report = {
        "model": f"htdemucs random init ({args.model})",
        "threads": args.threads,
        "device": args.device,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "runs": [],
    }
    for seconds in args.seconds:
        audio = work / f"input-{int(seconds)}s.wav"
        if not audio.exists():
            write_input(audio, seconds)
        data_dir = work / f"data-{args.model}-{int(seconds)}s"
        if not (data_dir / "catalog.db").exists():
            record_track(data_dir, audio)
        row: dict = {"audio_seconds": seconds}
        for mode in args.modes:
            if mode == "hit" and "ours" not in args.modes:
                continue
            row[mode] = run_worker(mode, args, audio, data_dir)
            print(f"{seconds:>6.0f} s {mode:<4} {json.dumps(row[mode])}", file=sys.stderr)
        if "ours" in row and "bare" in row:
            row["time_overhead"] = row["ours"]["seconds"] / row["bare"]["seconds"] - 1
        report["runs"].append(row)
    by_len = {r["audio_seconds"]: r for r in report["runs"]}
    if 300 in by_len and 1800 in by_len and "ours" in by_len[300] and "ours" in by_len[1800]:
        report["rss_30min_over_5min"] = (
            by_len[1800]["ours"]["peak_rss_mb"] / by_len[300]["ours"]["peak_rss_mb"] - 1
        )
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
