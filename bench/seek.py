"""What decoding only the analysis windows saves, and what one seek costs, per format.

For each format, the same synthetic tracks (bench/decode.py's corpus: stereo
44.1 kHz music from bench/corpus.py) are decoded to 22,050 Hz mono twice, with the
shipped decoder of the format: whole, and as the analysis windows of the default
budget (ingest.windowed.read_windows, which opens and seeks once per window).
CPU seconds of this process (``time.process_time``, so other work on a shared
machine does not count), median of ``--repeats``. The cost of one seek is what the
windows cost beyond their share of the whole decode, per window:

    (windows CPU - whole CPU * budget / duration) / windows

    python bench/seek.py --tracks 4 --seconds 240
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from decode import FORMATS, cpu, synthetic_corpus  # noqa: E402  (bench/decode.py)

from embeddings.audio import decoder_for, open_audio  # noqa: E402
from embeddings.frontend import FrontendConfig  # noqa: E402
from embeddings.windows import DEFAULT_ANALYSIS_SECONDS, analysis_windows  # noqa: E402
from ingest.windowed import read_windows  # noqa: E402


def _whole(path: Path, rate: int) -> float:
    t0 = time.process_time()
    for _ in open_audio(path, rate).blocks:
        pass
    return time.process_time() - t0


def _windows(path: Path, config: FrontendConfig, budget: float) -> tuple[float, int]:
    t0 = time.process_time()
    stream = open_audio(path, config.sample_rate)
    stream.blocks.close()
    windows = analysis_windows(stream.info.duration_s, budget, config.segment_seconds)
    read_windows(path, config, windows, stream.info)
    return time.process_time() - t0, len(windows)


def measure(corpus: dict[str, list[Path]], seconds: float, budget: float, repeats: int) -> dict:
    config = FrontendConfig()
    out = {}
    for fmt, files in corpus.items():
        whole = statistics.median(
            sum(_whole(f, config.sample_rate) for f in files) for _ in range(repeats)
        )
        runs = [[_windows(f, config, budget) for f in files] for _ in range(repeats)]
        windowed = statistics.median(sum(t for t, _ in run) for run in runs)
        count = sum(n for _, n in runs[0])
        minutes = len(files) * seconds / 60
        out[fmt] = {
            "decoder": decoder_for(files[0]),
            "whole_cpu_s": whole,
            "windows_cpu_s": windowed,
            "windows": count,
            "whole_audio_min_per_cpu_min": minutes / (whole / 60),
            "track_min_per_cpu_min_windows": minutes / (windowed / 60),
            "seek_cost_ms": 1000 * (windowed - whole * budget / seconds) / count,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--budget", type=float, default=DEFAULT_ANALYSIS_SECONDS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--root", type=Path, default=Path("/tmp/sonic-bench-seek"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    corpus = synthetic_corpus(args.root, args.tracks, args.seconds, formats)
    result = {"cpu": cpu(), "tracks": args.tracks, "seconds": args.seconds,
              "budget": args.budget, "formats": measure(corpus, args.seconds, args.budget,
                                                        args.repeats)}  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.tracks} tracks x {args.seconds:g} s per format, budget {args.budget:g} s; "
          f"{result['cpu']['model']}")  # fmt: skip
    print("format  decoder            whole CPU s  windows CPU s  speed-up  ms per seek")
    for fmt, r in result["formats"].items():
        speedup = r["whole_cpu_s"] / r["windows_cpu_s"]
        print(
            f"{fmt:<7} {r['decoder']:<18} {r['whole_cpu_s']:11.2f}  "
            f"{r['windows_cpu_s']:13.2f}  {speedup:7.1f}x  {r['seek_cost_ms']:11.1f}"
        )


if __name__ == "__main__":
    main()
