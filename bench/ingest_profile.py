"""Where one ``sonic ingest`` spends its CPU, per stage and per process, sampled by py-spy.

Runs a real ``sonic ingest`` (defaults: heatmaps on, the analysis budget) on a fresh
data directory under ``py-spy record --subprocesses`` (every process of the tree,
only samples where a thread is on the CPU), then files each sample under the
deepest stage it is in: process start and imports, planning, hashing, tags, opening
a file (headers), decoding (FFmpeg / libsndfile), resampling, the log-mel features,
pickling and unpickling worker messages, the network, the heatmap map (CAM or
Grad-CAM), the PNG, catalog writes, the FAISS index. Prints CPU seconds per stage
(samples / rate), main process and decode workers apart, beside the whole tree's
CPU seconds from the kernel, so what the sampler missed (threads outside Python,
the sampler's own share) shows as the difference.

py-spy is a profiling tool, not a project dependency: ``pip install --user py-spy``.

    python bench/ingest_profile.py /work/data/gamemusic-pretrain --limit 20
    PYTHONPATH=/work/main python bench/ingest_profile.py ... --tree /work/main   # before
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# stage -> function names (the last part of py-spy's qualified name). A sample goes
# to the stage of the deepest frame on its stack that names one of them.
STAGES: dict[str, tuple[str, ...]] = {
    "imports": ("_find_and_load",),
    "planning (scan, catalog reads)": ("make_plan", "file_states", "iter_audio_files"),
    "hashing": ("content_hash",),
    "tags": ("read_tags",),
    "open file, headers": (
        "probe",
        "open_pyav_audio",
        "open_sndfile",
        "_check_not_empty",
        "_open_with",
        "audio_info",
    ),
    "decode": (
        "pull_all",
        "_fed_blocks",
        "read_windows",
        "_prime",
        "resumed",
        "resampled",
        "_skip_samples",
        "_from_sample",
        "_skip",
        "_array",
        "pull",
        "open_audio",
    ),
    "filter graph setup": ("__init__@_Graph", "configure"),
    "resample (soxr)": ("__call__@Resampler", "resample_chunk"),
    "downmix, sample checks": ("downmix", "clean", "convert_channels", "silent_peak"),
    "segmenting": ("push@StreamingSegmenter", "finish@StreamingSegmenter", "split_segments"),
    "features (log-mel)": ("batch_features", "log_mel", "mel_matrix", "_mel_matrix"),
    "overview": ("overview_of_windows", "encode", "push@OverviewBuilder"),
    "IPC: pickling, queues": (
        "dumps",
        "loads",
        "put",
        "get",
        "_send_bytes",
        "_recv_bytes",
        "_feed",
        "_send",
        "_recv",
        "recv_bytes",
    ),
    "model load, setup": (
        "load_default_model",
        "loaded",
        "load_model",
        "__init__@Predictor",
        "inference_copy",
        "fused_for_inference",
        "load_checkpoint",
    ),
    "network (predict)": ("predict", "_predict_torch", "_predict_onnx", "_predict"),
    "apply results, projection": (
        "_apply",
        "project_segments",
        "push@BestWindowTracker",
        "_maybe_finish",
    ),
    "heatmap map (CAM / Grad-CAM)": ("class_activation_map", "grad_cam", "_grad_cam", "band_focus"),
    "heatmap PNG": ("render_heatmap_png", "atomic_write"),
    "catalog writes (SQLite)": ("record_analysis", "record_failure", "touch", "mark_missing"),
    "FAISS index": ("save_index",),
    "library genres": ("apply_library_genres", "remember_shipped_threshold"),
}
_BY_NAME: dict[str, str] = {}
for _stage, _names in STAGES.items():
    for _name in _names:
        _BY_NAME[_name] = _stage
_PROCESS = re.compile(r'process (\d+):"(.*?)"(;|$)')


def classify(frames: list[str]) -> str:
    """The stage of the deepest frame of ``frames`` (root first) that names one."""
    stage = "other"
    for frame in frames:
        qualname = frame.split(" (", 1)[0]
        parts = qualname.split(".")
        leaf, owner = parts[-1], parts[-2] if len(parts) > 1 else ""
        found = _BY_NAME.get(f"{leaf}@{owner}") or _BY_NAME.get(leaf)
        if found:
            stage = found
    return stage


def role_of(command: str) -> str | None:
    if "ui.cli" in command:
        return "main"
    if "resource_tracker" in command:
        return "tracker"
    if "spawn_main" in command:
        return "workers"
    return None


def read_samples(raw: Path) -> dict[str, dict[str, int]]:
    """role -> stage -> samples, from py-spy's raw (collapsed-stack) output.

    Each stack starts with one ``process PID:"command"`` frame per process from the
    root down; a command may itself hold ``;`` (``spawn_main``'s), so those frames
    are matched as a whole before the rest is split.
    """
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        role = "other"
        while (m := _PROCESS.match(stack)) is not None:
            role = role_of(m.group(2)) or role
            stack = stack[m.end() :]
        table[role][classify(stack.split(";"))] += int(count)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=0, help="only the first N files (0: all)")
    parser.add_argument("--tree", type=Path, default=REPO, help="the checkout whose ingest runs")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--raw", type=Path, default=None, help="keep py-spy's raw output here")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--ingest-arg", action="append", default=[])
    args = parser.parse_args()

    spy = shutil.which("py-spy") or str(Path.home() / ".local" / "bin" / "py-spy")
    with tempfile.TemporaryDirectory(prefix="sonic-profile-") as tmp:
        folder = args.folder
        if args.limit:
            sys.path.insert(0, str(args.tree))
            from ingest.scan import iter_audio_files

            folder = Path(tmp) / "music"
            folder.mkdir()
            for i, f in enumerate(sorted(iter_audio_files([args.folder]))[: args.limit]):
                (folder / f"{i:03d}{f.suffix}").symlink_to(f)
        raw = args.raw or Path(tmp) / "profile.raw"
        cmd = [spy, "record", "--subprocesses", "--format", "raw", "--rate", str(args.rate),
               "--nonblocking", "-o", str(raw), "--", sys.executable, "-m", "ui.cli", "ingest",
               str(folder), "--data-dir", str(Path(tmp) / "data"), "--json", "--no-progress",
               "--nice", "0", *args.ingest_arg]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(args.tree)}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        run = subprocess.run(cmd, cwd=args.tree, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if run.returncode != 0:
            raise SystemExit(f"ingest failed: {run.stderr[-3000:]}")
        # py-spy writes its own lines to stdout after the ingest's JSON
        summary, _ = json.JSONDecoder().raw_decode(run.stdout[run.stdout.index("{") :])
        table = read_samples(raw)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    seconds = {
        role: {s: n / args.rate for s, n in stages.items()} for role, stages in table.items()
    }
    result = {
        "tree": str(args.tree), "files": summary["analysed"], "failed": len(summary["failed"]),
        "audio_min": summary["audio_hours"] * 60, "inference": summary.get("inference"),
        "analysis": summary.get("analysis"), "wall_s": wall, "cpu_s_tree_incl_pyspy": cpu,
        "sampled_cpu_s": {role: sum(v.values()) for role, v in seconds.items()},
        "stages": seconds,
    }  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['files']} files, {result['audio_min']:.1f} audio-min, tree {args.tree}")
    print(f"wall {wall:.1f} s; CPU of the tree (py-spy included) {cpu:.1f} s")
    for role in ("main", "workers", "tracker", "other"):
        if role not in seconds:
            continue
        total = sum(seconds[role].values())
        print(f"-- {role}: {total:.2f} CPU-s sampled")
        for stage, s in sorted(seconds[role].items(), key=lambda kv: -kv[1]):
            print(f"   {stage:34s} {s:7.2f} s  {s / total:6.1%}")


if __name__ == "__main__":
    main()
