"""Generate a synthetic corpus for the benchmarks: N tracks of music-like audio.

Each track is stereo 44.1 kHz: a chord progression, a kick/snare/hat pattern at a
per-track tempo, a bass line and some noise, so decoding, resampling and the model
see realistic amounts of work. Deterministic per seed.

    python bench/corpus.py OUT_DIR --tracks 200 --seconds 180 --format mp3
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 44_100
# Frames per write. libsndfile 1.2's Vorbis encoder copies each write onto the stack,
# so one write of a whole 180 s track overflows it and the process dies with SIGSEGV
# (multiprocessing.Pool then waited forever for the dead worker's result: the "hang"
# of --format ogg). Writing in blocks is what every streaming encoder expects anyway.
WRITE_FRAMES = 1 << 15


def _envelope(n: int, decay: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (decay * SR)).astype(np.float32)


def synth_track(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n, dtype=np.float32) / SR
    bpm = rng.uniform(70, 160)
    beat = int(SR * 60 / bpm)
    root = rng.uniform(110, 220)
    ratios = [1, 5 / 4, 3 / 2, 15 / 8]
    bar = 4 * beat
    music = np.zeros(n, dtype=np.float32)
    for start in range(0, n, bar):
        stop = min(n, start + bar)
        shift = 2 ** (rng.integers(-5, 7) / 12)
        for ratio in ratios[: rng.integers(2, 5)]:
            f = root * shift * ratio
            music[start:stop] += 0.08 * np.sin(2 * np.pi * f * t[start:stop])
        music[start:stop] += 0.15 * np.sin(2 * np.pi * root * shift / 2 * t[start:stop])
    kick = np.sin(2 * np.pi * 55 * np.arange(4000) / SR).astype(np.float32) * _envelope(4000, 0.05)
    snare = rng.standard_normal(3000).astype(np.float32) * _envelope(3000, 0.03) * 0.3
    hat = rng.standard_normal(800).astype(np.float32) * _envelope(800, 0.005) * 0.1
    for i, start in enumerate(range(0, n - beat - 4000, beat)):
        if i % 2 == 0:
            music[start : start + 4000] += 0.6 * kick
        else:
            music[start : start + 3000] += snare
        half = start + beat // 2
        music[half : half + 800] += hat
    music += 0.01 * rng.standard_normal(n).astype(np.float32)
    pan = rng.uniform(0.3, 0.7)
    stereo = np.stack([music * (1 - pan) * 2, music * pan * 2], axis=1)
    return (0.8 * stereo / max(1e-6, np.abs(stereo).max())).astype(np.float32)


def _write_one(job: tuple[Path, float, int, str]) -> Path:
    path, seconds, seed, fmt = job
    if not path.exists():  # re-running resumes an interrupted generation
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        audio = synth_track(seconds, seed=seed)
        with sf.SoundFile(str(tmp), "w", SR, audio.shape[1], format=fmt.upper()) as out:
            for start in range(0, len(audio), WRITE_FRAMES):
                out.write(audio[start : start + WRITE_FRAMES])
        tmp.replace(path)
    return path


def generate(out: Path, tracks: int, seconds: float, fmt: str, jobs: int = 1) -> list[Path]:
    """Write the corpus (MP3 encoding is the slow part: LAME runs ~20x real time).

    A worker that dies (an encoder crash) raises BrokenProcessPool here rather than
    leaving the run waiting for it.
    """
    from concurrent.futures import ProcessPoolExecutor

    out.mkdir(parents=True, exist_ok=True)
    work = [
        (out / f"album{i // 10:03d}" / f"track{i:04d}.{fmt}", seconds, i, fmt)
        for i in range(tracks)
    ]
    with ProcessPoolExecutor(jobs) as pool:
        return list(pool.map(_write_one, work))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tracks", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--format", default="mp3", choices=["mp3", "flac", "wav", "ogg"])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    paths = generate(args.out, args.tracks, args.seconds, args.format, args.jobs)
    print(f"{len(paths)} files under {args.out}")


if __name__ == "__main__":
    main()
