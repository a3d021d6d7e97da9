"""Offline teacher for distillation: musicnn (MSD_musicnn) outputs per 3-s window, cached.

Issue 7 lets the student embedding learn from a pretrained music tagger where one
can be run offline. musicnn (Pons & Serra) bundles taggers trained on the Million
Song Dataset; this script runs its MSD_musicnn model once over a set of folders and
caches, for every track, the model's outputs on consecutive non-overlapping 3-second
windows from the start of the file, so a student cut into the same 3-s segments can
be trained to predict them. The teacher is optional and lives only here: the
product never imports it, and this script takes from the product only what runs
without torch (the atomic writer, through ``teacher_files.py``, and the
same-album statistics, through ``teacher_score.py``).

It needs TensorFlow 1-style graphs, so it runs in its own virtual environment,
outside the repository (musicnn's own pins cannot be met on Python 3.11, hence
``--no-deps`` for musicnn itself and its dependencies named by hand)::

    python3.11 -m venv /work/venv-musicnn
    /work/venv-musicnn/bin/pip install --upgrade pip
    /work/venv-musicnn/bin/pip install "tensorflow-cpu==2.15.1" "numpy<2" \
        "librosa==0.10.2.post1" soundfile
    /work/venv-musicnn/bin/pip install --no-deps musicnn==0.1.0

Usage (under ``nice -n 19`` on a shared machine; one core by default)::

    V=/work/venv-musicnn/bin/python
    $V tools/teacher_musicnn.py /work/data/gamemusic-heldout          # full length
    $V tools/teacher_musicnn.py /work/data/gamemusic-pretrain --max-seconds 90
    $V tools/teacher_musicnn.py /work/data/gtzan/genres
    $V tools/teacher_musicnn.py --score /work/data/gamemusic-heldout  # precision@5

Cache (``--cache``, default /work/data/teacher_musicnn)::

    index.json   {absolute resolved audio path: npz file name}
    <name>.npz   float16 taggram (n, 50) sigmoid tag probabilities,
                 penultimate (n, 200), max_pool (n, 753), mean_pool (n, 753);
                 tag_names (50,) str; window_seconds = 3.0

Row k of every array is window k: the 3 s starting at 3k s in the file. Only
whole windows are kept (musicnn's own rule: all 187 spectrogram frames present),
so a 30-s clip gives 10 rows. With ``--max-seconds N`` only the first N seconds
are analysed (fewer rows). Files are written atomically and a cached track whose
rows already cover the request is skipped, so an interrupted run resumes.

Why not ``musicnn.extractor.extractor`` itself: it rebuilds the TensorFlow graph
and reloads the checkpoint for every file, feeds one window at a time, and steps
through the spectrogram every 187 frames, i.e. every 2.992 s, so its window k
drifts from our segment k (by 0.8 s after 5 minutes). Worse, in musicnn 0.1.0 its
loop over later batches stores the *first* batch's ``penultimate`` (and cnn1-3)
again, so with its batch size of 1 every row of ``penultimate`` is window 0's.
This script uses musicnn's own model definition, checkpoint and spectrogram code
unchanged (librosa.load at 16 kHz, 96-band mel, float16, log10(10000 x + 1)),
builds the graph once, feeds batches, and starts window k at frame round(187.5 k),
which is sample 48,000 k to within half a hop (8 ms). On window 0, which both
start at frame 0, the outputs equal the extractor's to float rounding
(``--check FILE`` compares the two: below 2e-6 on a GTZAN clip); with the
extractor's 187-frame stride, taggram, mean_pool and max_pool match on every window.

Scoring (``--score DIR``): DIR holds one folder per album or soundtrack; each
track's embedding is the mean of its windows' outputs for one layer, L2-normalised;
for each track, the fraction of its 5 nearest other tracks (cosine) from the same
album, averaged over tracks: same-album precision@5, per layer
(``teacher_score.py``, which scores any cache's layers).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

# the cache files of every teacher, and the per-layer score (both run without torch)
from teacher_files import audio_files, npz_name, read_index, write_arrays, write_index
from teacher_score import score

LAYERS = ("taggram", "penultimate", "mean_pool", "max_pool")
WINDOW_SECONDS = 3.0
MODEL = "MSD_musicnn"
DEFAULT_CACHE = Path("/work/data/teacher_musicnn")


# --------------------------------------------------------------------------- teacher


class Teacher:
    """musicnn's MSD_musicnn graph, built once; maps audio files to per-window outputs."""

    def __init__(self, threads: int = 1, batch: int = 32) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import warnings

        warnings.filterwarnings("ignore")
        import librosa
        import musicnn
        import tensorflow as tf
        from musicnn import configuration as config
        from musicnn import models

        tf.compat.v1.disable_eager_execution()
        self.tf, self.librosa, self.config = tf, librosa, config
        self.batch = batch
        self.labels = list(config.MSD_LABELS)
        # As musicnn.extractor computes it: 187 frames for 3 s at 16 kHz, hop 256.
        self.n_frames = int(
            librosa.time_to_frames(
                WINDOW_SECONDS, sr=config.SR, n_fft=config.FFT_SIZE, hop_length=config.FFT_HOP
            )
            + 1
        )
        self.frames_per_window = WINDOW_SECONDS * config.SR / config.FFT_HOP  # 187.5

        graph = tf.Graph()
        with graph.as_default():
            with tf.name_scope("model"):
                self.x = tf.compat.v1.placeholder(tf.float32, [None, self.n_frames, config.N_MELS])
                self.is_training = tf.compat.v1.placeholder(tf.bool)
                out = models.define_model(self.x, self.is_training, MODEL, len(self.labels))
                y, _timbral, _temporal, _c1, _c2, _c3, mean_pool, max_pool, penultimate = out
                self.outputs = {
                    "taggram": tf.nn.sigmoid(y),
                    "penultimate": penultimate,
                    "mean_pool": mean_pool,
                    "max_pool": max_pool,
                }
            saver = tf.compat.v1.train.Saver()
        session_config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1
        )
        self.session = tf.compat.v1.Session(graph=graph, config=session_config)
        # musicnn.extractor swallows a failed restore (leaving random weights): not here.
        saver.restore(self.session, str(Path(musicnn.__file__).parent / MODEL) + "/")

    def spectrogram(self, path: Path, max_seconds: float | None) -> np.ndarray:
        """(frames, 96) log-mel exactly as ``musicnn.extractor.batch_data`` computes it."""
        c = self.config
        audio, sr = self.librosa.load(str(path), sr=c.SR, duration=max_seconds)
        rep = self.librosa.feature.melspectrogram(
            y=audio, sr=sr, hop_length=c.FFT_HOP, n_fft=c.FFT_SIZE, n_mels=c.N_MELS
        ).T
        rep = rep.astype(np.float16)
        return np.log10(10000 * rep + 1)

    def window_starts(self, n_spec_frames: int) -> list[int]:
        """First frame of each whole 3-s window: round(187.5 k) while 187 frames fit."""
        starts = []
        k = 0
        while True:
            start = int(np.floor(k * self.frames_per_window + 0.5))
            if start + self.n_frames > n_spec_frames:
                return starts
            starts.append(start)
            k += 1

    def expected_windows(self, path: Path, max_seconds: float | None) -> int | None:
        """How many windows a run would give, from the header alone (None: unknown)."""
        import soundfile as sf

        try:
            info = sf.info(str(path))
        except Exception:
            return None
        seconds = info.frames / info.samplerate
        if max_seconds is not None:
            seconds = min(seconds, max_seconds)
        n_samples = int(np.ceil(seconds * self.config.SR))
        return len(self.window_starts(1 + n_samples // self.config.FFT_HOP))

    def run_windows(self, windows: np.ndarray) -> dict[str, np.ndarray]:
        """Model outputs for a stack of (n, 187, 96) spectrogram windows."""
        parts: dict[str, list[np.ndarray]] = {k: [] for k in self.outputs}
        names = list(self.outputs)
        for i in range(0, len(windows), self.batch):
            values = self.session.run(
                [self.outputs[k] for k in names],
                feed_dict={self.x: windows[i : i + self.batch], self.is_training: False},
            )
            for name, value in zip(names, values, strict=True):
                parts[name].append(np.asarray(value, dtype=np.float32))
        return {k: np.concatenate(v, axis=0) for k, v in parts.items()}

    def analyse(self, path: Path, max_seconds: float | None) -> dict[str, np.ndarray]:
        spec = self.spectrogram(path, max_seconds)
        starts = self.window_starts(len(spec))
        if not starts:
            raise ValueError(f"shorter than one {WINDOW_SECONDS:g}-s window")
        windows = np.stack([spec[s : s + self.n_frames] for s in starts])
        return self.run_windows(windows)


def save_track(cache: Path, name: str, outputs: dict[str, np.ndarray], labels: list[str]) -> None:
    arrays = {k: outputs[k].astype(np.float16) for k in LAYERS}
    arrays["tag_names"] = np.array(labels)
    arrays["window_seconds"] = np.array(WINDOW_SECONDS)
    write_arrays(cache / name, arrays)


def extract(
    folders: list[Path], cache: Path, max_seconds: float | None, threads: int, batch: int
) -> int:
    """Analyse every audio file under ``folders`` not yet cached; returns failures."""
    cache.mkdir(parents=True, exist_ok=True)
    files = audio_files(folders)
    index = read_index(cache)
    teacher = Teacher(threads=threads, batch=batch)
    todo: list[Path] = []
    for path in files:
        name = index.get(str(path))
        if name and (cache / name).exists():
            expected = teacher.expected_windows(path, max_seconds)
            with np.load(cache / name) as data:
                have = len(data["taggram"])
            if expected is None or have >= expected - 1:  # resampling may round by one
                continue
        todo.append(path)
    span = f"first {max_seconds:g} s" if max_seconds else "full length"
    print(
        f"{len(files)} audio files, {len(files) - len(todo)} cached, {len(todo)} to analyse"
        f" ({span}) -> {cache}",
        flush=True,
    )
    failures = 0
    audio_seconds = 0.0
    t0 = time.perf_counter()
    for i, path in enumerate(todo, 1):
        try:
            outputs = teacher.analyse(path, max_seconds)
        except Exception as exc:  # a corrupt or too-short file must not stop the run
            failures += 1
            print(f"[{i}/{len(todo)}] FAILED {path}: {exc}", file=sys.stderr, flush=True)
            continue
        name = index.get(str(path)) or npz_name(path)
        save_track(cache, name, outputs, teacher.labels)
        index[str(path)] = name
        write_index(cache, index)
        n = len(outputs["taggram"])
        audio_seconds += n * WINDOW_SECONDS
        wall = time.perf_counter() - t0
        print(
            f"[{i}/{len(todo)}] {n:4d} windows  {path.parent.name}/{path.name}  "
            f"({audio_seconds / 60:.1f} audio-min in {wall / 60:.1f} min, "
            f"{audio_seconds / max(wall, 1e-9):.1f}x real time)",
            flush=True,
        )
    wall = time.perf_counter() - t0
    print(
        f"done: {len(todo) - failures} analysed, {failures} failed; "
        f"{audio_seconds / 60:.1f} audio-minutes in {wall / 60:.1f} wall-minutes"
        f" = {audio_seconds / max(wall, 1e-9):.1f} audio-min per wall-min",
        flush=True,
    )
    return failures


# --------------------------------------------------------------------------- check


def check(path: Path) -> None:
    """Compare window 0 and the drift of later windows with musicnn.extractor itself."""
    from musicnn.extractor import extractor

    taggram, _, features = extractor(
        str(path), model=MODEL, input_length=3, input_overlap=False, extract_features=True
    )
    ours = Teacher().analyse(path, None)
    reference = {
        "taggram": taggram,
        "penultimate": features["penultimate"],
        "mean_pool": features["mean_pool"],
        "max_pool": features["max_pool"],
    }
    for layer, ref in reference.items():
        ref = np.asarray(ref, dtype=np.float32)
        first = float(np.abs(ours[layer][0] - ref[0]).max())
        n = min(len(ref), len(ours[layer]))
        rest = float(np.abs(ours[layer][1:n] - ref[1:n]).max()) if n > 1 else 0.0
        print(
            f"{layer:<12} extractor {ref.shape} ours {ours[layer].shape}  "
            f"max |diff| window 0: {first:.2e}, later windows: {rest:.2e}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, help="audio folders (or files)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="analyse only the first N seconds of each track",
    )
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads")
    parser.add_argument("--batch", type=int, default=32, help="windows per TensorFlow call")
    parser.add_argument(
        "--score",
        type=Path,
        metavar="DIR",
        help="print same-album precision@5 per layer for DIR/<album>/...",
    )
    parser.add_argument(
        "--check", type=Path, metavar="FILE", help="compare with musicnn.extractor on one file"
    )
    args = parser.parse_args(argv)
    if args.check:
        check(args.check)
        return 0
    if args.score:
        score(args.score, args.cache, LAYERS)
        return 0
    if not args.folders:
        parser.error("give audio folders, --score DIR or --check FILE")
    failures = extract(args.folders, args.cache, args.max_seconds, args.threads, args.batch)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
