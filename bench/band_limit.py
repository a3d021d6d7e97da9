"""Does a model hear the same music the same way from a 22,050 Hz clip and a 44.1 kHz file?

GTZAN's clips are recorded at 22,050 Hz and keep energy up to Nyquist (11,025 Hz).
A user's library is 44.1 or 48 kHz audio that ingest resamples to 22,050 Hz, and the
resampler's anti-aliasing filter removes the last kilohertz below Nyquist. A network
trained on the clips can learn to rely on that top kilohertz, and then hears a
different spectrogram in every real track. The front end's ``band_limit_hz`` (see
``embeddings/frontend.py``) leaves that part of the band out of training and ingest
alike. This script measures both sides, on a folder-per-genre dataset:

- ``agreement``: for each clip, the model's track embedding and genre from the clip
  itself and from a lossless 44.1 kHz stereo FLAC copy of it (what a CD rip is), read
  through ingest's own decoder; optionally also an MP3 copy. Reports genre agreement,
  accuracy, the cosine between the two embeddings, and how often the copy's nearest
  clip is its own original. The models may have seen these clips: this measures
  consistency, not generalisation.
- ``cross-domain``: k-fold cross-validation from scratch (the model card's recipe for
  (a)) with and without the band limit, each fold's network trained on the 22,050 Hz
  clips and tested on its held-out clips twice, as clips and as 44.1 kHz copies.
  That is the accuracy a user's library gets, measured on clips no network saw.

    python bench/band_limit.py agreement /path/to/gtzan/genres --model OLD.pt --model shipped
    python bench/band_limit.py cross-domain /path/to/gtzan/genres --band-limit none \\
        --band-limit 10000 --json band-limit-cv.json

The 44.1 kHz copies are written once under ``--copies`` (default: a folder beside
the dataset named ``<dataset>-44k``) and reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from embeddings.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint  # noqa: E402
from embeddings.dataset import discover, log_power  # noqa: E402
from embeddings.evaluate import clip_probabilities, segment_probabilities  # noqa: E402
from embeddings.experiment import _with_validation  # noqa: E402
from embeddings.frontend import FrontendConfig, batch_features, split_segments  # noqa: E402
from embeddings.inference import Predictor, aggregate, l2_normalise  # noqa: E402
from embeddings.splits import stratified_folds  # noqa: E402
from embeddings.train import TrainConfig, train_network, training_dtype  # noqa: E402
from ingest.decode import decode_all  # noqa: E402

COPY_RATE = 44_100


def copy_path(copies: Path, key: str, fmt: str) -> Path:
    return copies / Path(key).with_suffix(f".{fmt}")


def make_copies(dataset, copies: Path, formats: list[str]) -> None:
    """44.1 kHz stereo copies of every clip (FLAC: lossless; MP3: libsndfile's default)."""
    for track in dataset.tracks:
        targets = [copy_path(copies, track.key, f) for f in formats]
        if all(t.is_file() for t in targets):
            continue
        audio, rate = sf.read(track.path, dtype="float32", always_2d=True)
        up = soxr.resample(audio, rate, COPY_RATE, quality="VHQ")
        up = np.clip(up if up.shape[1] == 2 else np.repeat(up[:, :1], 2, axis=1), -1.0, 1.0)
        for target, fmt in zip(targets, formats, strict=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            sf.write(target, up, COPY_RATE, format=fmt.upper())


def read(path: Path, config: FrontendConfig) -> np.ndarray:
    """Mono audio at the model's rate through ingest's decoder, as ``sonic ingest`` reads it."""
    return decode_all(path, config.sample_rate)


def agreement(args: argparse.Namespace) -> dict:
    dataset = discover(args.dataset)
    copies = args.copies or args.dataset.with_name(args.dataset.name + "-44k")
    formats = ["flac", *(["mp3"] if args.mp3 else [])]
    make_copies(dataset, copies, formats)
    torch.set_num_threads(args.threads)
    labels = np.array([dataset.genres.index(t.genre) for t in dataset.tracks])
    out: dict = {"dataset": str(args.dataset), "tracks": len(labels), "models": {}}
    for spec in args.model or ["shipped"]:
        model = load_checkpoint(DEFAULT_CHECKPOINT if spec == "shipped" else Path(spec))
        predictor = Predictor(model, device="cpu", precision=args.precision)
        config = model.frontend
        genre_index = np.array([model.genres.index(g) for g in dataset.genres])

        def track(path: Path, predictor=predictor, config=config):
            result = predictor.predict(
                batch_features(split_segments(read(path, config), config), config)
            )
            return aggregate(result.probabilities), l2_normalise(result.embeddings.mean(axis=0))

        started = time.perf_counter()
        native = [track(t.path) for t in dataset.tracks]
        e0 = np.stack([e for _, e in native])
        p0 = np.stack([p for p, _ in native]).argmax(axis=1)
        row = {
            "model_id": model.model_id,
            "band_limit_hz": config.band_limit_hz,
            "accuracy_clips": float((p0 == genre_index[labels]).mean()),
        }
        for fmt in formats:
            copied = [track(copy_path(copies, t.key, fmt)) for t in dataset.tracks]
            e1 = np.stack([e for _, e in copied])
            p1 = np.stack([p for p, _ in copied]).argmax(axis=1)
            cos = (e0 * e1).sum(axis=1)
            row[fmt] = {
                "accuracy": float((p1 == genre_index[labels]).mean()),
                "genre_agreement": float((p1 == p0).mean()),
                "cosine_median": float(np.median(cos)),
                "cosine_p10": float(np.percentile(cos, 10)),
                "cosine_min": float(cos.min()),
                "own_original_nearest": float(
                    ((e1 @ e0.T).argmax(axis=1) == np.arange(len(e1))).mean()
                ),
            }
        row["seconds"] = time.perf_counter() - started
        out["models"][f"{spec} ({model.model_id})"] = row
        print_agreement(f"{spec} ({model.model_id})", row, formats)
    return out


def print_agreement(name: str, row: dict, formats: list[str]) -> None:
    limit, accuracy = row["band_limit_hz"], row["accuracy_clips"]
    print(f"{name}, band limit {limit}: accuracy on the clips {accuracy:.3f}")
    for fmt in formats:
        r = row[fmt]
        print(
            f"  44.1 kHz {fmt}: accuracy {r['accuracy']:.3f}, same genre as the clip "
            f"{r['genre_agreement']:.3f}, embedding cosine median {r['cosine_median']:.3f} "
            f"p10 {r['cosine_p10']:.3f} min {r['cosine_min']:.3f}, "
            f"nearest clip is its own original {r['own_original_nearest']:.3f}"
        )


def cross_domain(args: argparse.Namespace) -> dict:
    dataset = discover(args.dataset)
    copies = args.copies or args.dataset.with_name(args.dataset.name + "-44k")
    make_copies(dataset, copies, ["flac"])
    labels = np.array([dataset.genres.index(t.genre) for t in dataset.tracks])
    folds = stratified_folds(labels, args.folds, args.seed)
    train_config = TrainConfig(
        max_epochs=args.epochs, crops_per_track=args.crops, patience=args.patience,
        lr=args.lr, seed=args.seed, threads=args.threads,
    )  # fmt: skip
    options = argparse.Namespace(val_fraction=0.125, train=train_config)
    out: dict = {"dataset": str(args.dataset), "folds": args.folds, "seed": args.seed,
                 "train_config": train_config.to_dict(), "front_ends": {}}  # fmt: skip
    for limit in args.band_limit:
        config = replace(FrontendConfig(), band_limit_hz=None if limit == "none" else float(limit))
        native_audio = [read(t.path, config) for t in dataset.tracks]
        copy_audio = [read(copy_path(copies, t.key, "flac"), config) for t in dataset.tracks]
        clips = [log_power(a, config) for a in native_audio]
        seg_native = [batch_features(split_segments(a, config), config) for a in native_audio]
        seg_copy = [batch_features(split_segments(a, config), config) for a in copy_audio]
        correct = {"clips": [], "copies_44k": []}
        for k, fold in enumerate(folds, start=1):
            fold = _with_validation(fold, labels, options)
            started = time.perf_counter()
            result = train_network(
                [clips[i] for i in fold.train], labels[fold.train], len(dataset.genres), config,
                replace(train_config, seed=args.seed + k),
                val_segments=[seg_native[i] for i in fold.val], val_labels=labels[fold.val],
            )  # fmt: skip
            dtype = training_dtype("resnet18")
            for name, segs in (("clips", seg_native), ("copies_44k", seg_copy)):
                probs = segment_probabilities(
                    result.network, [segs[i] for i in fold.test], dtype=dtype
                )
                pred = clip_probabilities(probs).argmax(axis=1)
                correct[name].extend(int(c) for c in pred == labels[fold.test])
            print(
                f"band limit {limit}, fold {k}/{len(folds)}: clips "
                f"{np.mean(correct['clips'][-len(fold.test):]):.2f}, 44.1 kHz copies "
                f"{np.mean(correct['copies_44k'][-len(fold.test):]):.2f} "
                f"({time.perf_counter() - started:.0f} s)", flush=True,
            )  # fmt: skip
        row = {name: float(np.mean(v)) for name, v in correct.items()}
        row["paired_copies_minus_clips"] = row["copies_44k"] - row["clips"]
        out["front_ends"][limit] = row
        print(f"band limit {limit}: clip accuracy {row['clips']:.3f} as clips, "
              f"{row['copies_44k']:.3f} as 44.1 kHz copies", flush=True)  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    for name in ("agreement", "cross-domain"):
        p = sub.add_parser(name)
        p.add_argument("dataset", type=Path, help="folder with one sub-folder per genre")
        p.add_argument("--copies", type=Path, default=None, help="where the 44.1 kHz copies go")
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--json", type=Path, default=None, help="also write the result here")
    a = sub.choices["agreement"]
    a.add_argument("--model", action="append", default=[], help="checkpoint or 'shipped'")
    a.add_argument("--mp3", action="store_true", help="also an MP3 copy (libsndfile's default)")
    a.add_argument("--precision", default="auto")
    c = sub.choices["cross-domain"]
    c.add_argument("--band-limit", action="append", default=[], help="Hz, or 'none' (repeatable)")
    c.add_argument("--folds", type=int, default=5)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--epochs", type=int, default=15)
    c.add_argument("--crops", type=int, default=4)
    c.add_argument("--patience", type=int, default=5)
    c.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    if args.mode == "cross-domain" and not args.band_limit:
        args.band_limit = ["none", str(FrontendConfig().band_limit_hz)]
    result = agreement(args) if args.mode == "agreement" else cross_domain(args)
    result["command"] = " ".join(["python bench/band_limit.py", *(argv or sys.argv[1:])])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
