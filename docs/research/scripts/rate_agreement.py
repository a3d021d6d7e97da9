"""Does a model hear the same music alike from a 22,050 Hz clip and a 44.1 kHz copy of it?

GTZAN's clips are recorded at 22,050 Hz and keep energy up to Nyquist (11,025 Hz).
A user's library is 44.1 or 48 kHz audio that reaches the model through the
resampler's anti-aliasing filter, which removes the last kilohertz below Nyquist
(and FFmpeg's resampler, which ingest uses for M4A, removes another share of it). A
network trained on the clips can lean on that kilohertz and then hears every real
track differently, and can even tell a library's 22,050 Hz files from its 44.1 kHz
ones by it. The front end's ``band_limit_hz`` (``embeddings/frontend.py``) leaves
that kilohertz out; this script measures what a model makes of the difference.

For each clip of a folder-per-genre dataset, the model's track embedding and genre
from the clip itself and from 44.1 kHz stereo copies of it (FLAC, lossless: what a
CD rip is; optionally MP3, libsndfile's default, and M4A/AAC, read by FFmpeg), all
read through ingest's own decoder. Reports genre agreement, accuracy, the cosine
between the clip's and the copy's embeddings, and how often the copy's nearest clip
is its own original. The models may have seen these clips: this measures
consistency, not generalisation.

    python docs/research/scripts/rate_agreement.py /path/to/gtzan/genres \\
        --model OLD.pt --model shipped --mp3 --m4a --json rate-agreement.json

The copies are written once under ``--copies`` (default: a folder beside the
dataset named ``<dataset>-44k``) and reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository

from embeddings.audio import decode_all  # noqa: E402
from embeddings.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint  # noqa: E402
from embeddings.frontend import FrontendConfig, batch_features, split_segments  # noqa: E402
from embeddings.inference import Predictor, aggregate, l2_normalise  # noqa: E402
from embeddings.training.dataset import discover  # noqa: E402

COPY_RATE = 44_100


def copy_path(copies: Path, key: str, fmt: str) -> Path:
    return copies / Path(key).with_suffix(f".{fmt}")


def make_copies(dataset, copies: Path, formats: list[str]) -> None:
    """44.1 kHz stereo copies of every clip in each of ``formats`` (flac, mp3, m4a)."""
    for track in dataset.tracks:
        targets = [copy_path(copies, track.key, f) for f in formats]
        if all(t.is_file() for t in targets):
            continue
        audio, rate = sf.read(track.path, dtype="float32", always_2d=True)
        # scipy's polyphase filter, not soxr: the copy must not be made by the very
        # filters the decoder applies, or agreement would be true by construction
        g = np.gcd(rate, COPY_RATE)
        up = resample_poly(audio, COPY_RATE // g, rate // g, axis=0).astype(np.float32)
        up = np.clip(up if up.shape[1] == 2 else np.repeat(up[:, :1], 2, axis=1), -1.0, 1.0)
        for target, fmt in zip(targets, formats, strict=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            if fmt == "m4a":
                write_m4a(target, up)
            else:
                sf.write(target, up, COPY_RATE, format=fmt.upper())


def write_m4a(path: Path, stereo: np.ndarray) -> None:
    """AAC in MP4 at FFmpeg's default bitrate; ingest decodes it through FFmpeg too."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=COPY_RATE)
        stream.layout = "stereo"
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(stereo.T, dtype=np.float32), format="fltp", layout="stereo"
        )
        frame.sample_rate = COPY_RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def read(path: Path, config: FrontendConfig) -> np.ndarray:
    """Mono audio at the model's rate through ingest's decoder, as ``sonic ingest`` reads it."""
    return decode_all(path, config.sample_rate)


def agreement(args: argparse.Namespace) -> dict:
    dataset = discover(args.dataset)
    copies = args.copies or args.dataset.with_name(args.dataset.name + "-44k")
    formats = ["flac", *(["mp3"] if args.mp3 else []), *(["m4a"] if args.m4a else [])]
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
    accuracy = row["accuracy_clips"]
    print(f"{name}: accuracy on the clips {accuracy:.3f}")
    for fmt in formats:
        r = row[fmt]
        print(
            f"  44.1 kHz {fmt}: accuracy {r['accuracy']:.3f}, same genre as the clip "
            f"{r['genre_agreement']:.3f}, embedding cosine median {r['cosine_median']:.3f} "
            f"p10 {r['cosine_p10']:.3f} min {r['cosine_min']:.3f}, "
            f"nearest clip is its own original {r['own_original_nearest']:.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="folder with one sub-folder per genre")
    parser.add_argument("--model", action="append", default=[], help="checkpoint or 'shipped'")
    parser.add_argument(
        "--mp3", action="store_true", help="also an MP3 copy (libsndfile's default)"
    )
    parser.add_argument("--m4a", action="store_true", help="also an AAC/M4A copy (read by FFmpeg)")
    parser.add_argument("--copies", type=Path, default=None, help="where the 44.1 kHz copies go")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    result = agreement(args)
    command = ["python docs/research/scripts/rate_agreement.py", *(argv or sys.argv[1:])]
    result["command"] = " ".join(command)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
