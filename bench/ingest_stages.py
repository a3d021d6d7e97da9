"""CPU seconds per stage of one ``sonic ingest``, per process, from CPU counters.

Each process of the ingest (main, decode workers) counts the CPU its threads spend
in each stage (bench/stage_cpu/sitecustomize.py: ``time.thread_time`` around the
functions that do each job, nested stages taken out), plus what it spent before
its work began (interpreter start and imports) and its total; "other" is the rest
(the main loop, queues, threads' bookkeeping). Counters, unlike a sampler's
wall-clock presence, are not inflated by a loaded machine. Several trees alternate,
``--repeats`` times; the table gives the median per stage.

    python bench/ingest_stages.py FOLDER --tree /work/main --tree . --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def one_run(folder: Path, tree: Path, extra: list[str], env_extra: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="sonic-stages-") as tmp:
        out = Path(tmp) / "counters"
        out.mkdir()
        env = {**os.environ, **env_extra, "SONIC_STAGE_CPU_DIR": str(out),
               "PYTHONPATH": f"{HERE / 'stage_cpu'}{os.pathsep}{tree}"}  # fmt: skip
        data = str(Path(tmp) / "data")
        cmd = [sys.executable, "-m", "ui.cli", "ingest", str(folder), "--data-dir", data,
               "--json", "--no-progress", "--nice", "0", *extra]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if run.returncode != 0:
            raise SystemExit(f"ingest failed in {tree}: {run.stderr[-2000:]}")
        summary = json.loads(run.stdout)
        records = [json.loads(p.read_text()) for p in out.glob("*.json")]
    table: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in records:
        role = {"main": "main", "worker": "workers"}.get(r["role"], "other processes")
        stages = table[role]
        for stage, s in r["stages"].items():
            stages[stage] += s
        startup = r["startup_cpu_s"] or 0.0
        stages["start-up, imports"] += startup
        stages["other"] += r["cpu_s"] - startup - sum(r["stages"].values())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"tree": str(tree), "cpu_s": cpu, "analysed": summary["analysed"],
            "audio_min": summary["audio_hours"] * 60, "inference": summary.get("inference"),
            "cpu_capability": summary.get("cpu_capability"),
            "table": {k: dict(v) for k, v in table.items()}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--tree", type=Path, action="append", required=True)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--avx2", action="store_true", help="ATEN/oneDNN/MKL capped to AVX2")
    parser.add_argument("--ingest-arg", action="append", default=[])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    env = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
           "ATEN_CPU_CAPABILITY": "avx2"} if args.avx2 else {}  # fmt: skip
    trees = [t.resolve() for t in args.tree]
    runs: dict[str, list[dict]] = {str(t): [] for t in trees}
    for r in range(args.repeats):
        for tree in trees if r % 2 == 0 else trees[::-1]:
            runs[str(tree)].append(one_run(args.folder, tree, args.ingest_arg, env))
    if args.json:
        print(json.dumps(runs, indent=2))
        return
    first = runs[str(trees[0])][0]
    print(f"{first['analysed']} files, {first['audio_min']:.1f} audio-min; {first['inference']}; "
          f"PyTorch kernels {first['cpu_capability']}; median of {args.repeats}")  # fmt: skip
    keys = sorted({(role, stage) for rs in runs.values() for x in rs
                   for role, st in x["table"].items() for stage in st})  # fmt: skip
    header = "".join(f"{Path(t).name[:18]:>20}" for t in runs)
    print(f"{'process':9} {'stage':34}{header}")
    for role, stage in sorted(keys, key=lambda k: (k[0], -np.median(
            [x["table"].get(k[0], {}).get(k[1], 0.0) for x in runs[str(trees[0])]]))):  # fmt: skip
        cells = "".join(
            f"{np.median([x['table'].get(role, {}).get(stage, 0.0) for x in rs]):20.2f}"
            for rs in runs.values()
        )
        print(f"{role:9} {stage:34}{cells}")
    totals = "".join(f"{np.median([x['cpu_s'] for x in rs]):20.2f}" for rs in runs.values())
    print(f"{'all':9} {'CPU s of the whole tree (kernel)':34}{totals}")


if __name__ == "__main__":
    main()
