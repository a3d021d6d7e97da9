"""Would normalising the track embeddings, with statistics from other music, help search?

The catalog compares tracks by the cosine of their mean ResNet18 embeddings as
they come out of the network, while ``sonic evaluate-similarity`` z-scores the
handcrafted baseline over the evaluated tracks. Post-ReLU averages share one
large common direction, so two questions follow: is the comparison fair to the
networks, and would the catalog gain by storing normalised vectors? This script
answers both on the same tracks in one run, for each method and these
transforms, all followed by the cosine:

- ``as evaluated``: what ``sonic evaluate-similarity`` scores (networks raw,
  handcrafted z-scored over the evaluated tracks);
- ``centre(ref)``, ``zscore(ref)``: minus the reference tracks' mean, and
  divided by their standard deviation;
- ``whiten(ref, eps)``: z-scored as above, then PCA whitening fitted on the
  reference tracks, each eigenvalue shrunk by ``eps`` times the largest so that
  directions the reference barely spans are not blown up (z-scoring first keeps
  a feature's units from deciding what counts as small: the handcrafted
  statistics mix decibels, hertz and ratios);
- ``whiten(library, eps)``: the same fitted on the reference *and* the evaluated
  tracks together, as a catalog would fit it on the whole library it holds.

Several evaluation folders can be given; the reference is embedded once and
each folder is scored on its own. The reference folders must not hold evaluated
tracks (files found in both are dropped from the reference, and counted). The
score is same-album precision@5 with its paired difference against ``as
evaluated``, as in ``pooling_similarity.py`` beside this script.

    python docs/research/scripts/whitening_similarity.py \\
        /work/data/gamemusic-heldout /work/data/gtzan/genres \\
        --reference /work/data/gamemusic-pretrain --reference-max-seconds 60 \\
        --model shipped --model runs/pre_m2.pt --random-seed 0 --json whitening.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository

from networks import add_network_options, features_by_frontend, named_networks  # noqa: E402
from paired_table import paired_rows  # noqa: E402  (both beside this script)

from embeddings.frontend import FrontendConfig  # noqa: E402
from embeddings.inference import pick_precision  # noqa: E402
from embeddings.training.dataset import load_audio  # noqa: E402
from embeddings.training.handcrafted import spectral_statistics  # noqa: E402
from embeddings.training.similarity_eval import discover_albums, track_embedding  # noqa: E402
from embeddings.training.similarity_metrics import (  # noqa: E402
    precision_at_k,
    whitening,
    zscore,
)
from embeddings.training.unlabelled import discover_audio  # noqa: E402

HANDCRAFTED = "handcrafted"
EPSILONS = (1e-3, 1e-2, 1e-1)


def method_vectors(
    paths: list[Path], networks: dict[str, nn.Module], max_seconds: float | None
) -> tuple[list[int], dict[str, np.ndarray]]:
    """Each method's track vector (networks: as the catalog stores it; handcrafted: raw).

    Returns the indices of the paths that decoded to sound, and the vectors of those.
    """
    fe = FrontendConfig()
    device = torch.device("cpu")
    dtype = pick_precision(device, "auto")
    kept: list[int] = []
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in [*networks, HANDCRAFTED]}
    for i, path in enumerate(paths):
        try:
            audio, _, _ = load_audio(path, fe.sample_rate)
        except Exception as exc:  # a broken file is reported, not fatal
            print(f"skipped {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        if max_seconds:
            audio = audio[: int(max_seconds * fe.sample_rate)]
        if not np.any(audio):
            print(f"skipped {path}: silent", file=sys.stderr)
            continue
        segments = features_by_frontend(audio, networks)
        for name, (network, frontend) in networks.items():
            vectors[name].append(track_embedding(network, segments[frontend], device, dtype))
        vectors[HANDCRAFTED].append(spectral_statistics(audio, fe.sample_rate))
        kept.append(i)
        print(f"[{i + 1}/{len(paths)}] {path.name}", file=sys.stderr)
    return kept, {name: np.stack(v) for name, v in vectors.items()}


def transforms(x: np.ndarray, reference: np.ndarray, name: str) -> dict[str, np.ndarray]:
    """Every transform of the evaluated vectors ``x``; see the module docstring."""
    std = reference.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    out = {
        "as evaluated": zscore(x) if name == HANDCRAFTED else x,
        "centre(ref)": x - reference.mean(axis=0),
        "zscore(ref)": (x - reference.mean(axis=0)) / std,
    }
    library = np.concatenate([reference, x])
    for eps in EPSILONS:
        for label, fitted_on in (("ref", reference), ("library", library)):
            mean, projection = whitening(fitted_on, eps)
            out[f"whiten({label}, {eps:g})"] = (x - mean) @ projection
    return out


def score_transforms(x: np.ndarray, reference: np.ndarray, name: str, labels: np.ndarray) -> dict:
    """Precision@5 of every transform, printed and returned, against ``as evaluated``."""
    scores = {
        label: precision_at_k(v, labels) for label, v in transforms(x, reference, name).items()
    }
    base = scores["as evaluated"]
    print(f"\n{name}: same-album precision@5, minus 'as evaluated'")
    return paired_rows(scores, base, "minus_as_evaluated", 22)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", type=Path, nargs="+", help="folders of albums, one sub-folder each")
    parser.add_argument(
        "--reference", type=Path, action="append", required=True,
        help="folder of other music the statistics are fitted on (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--reference-max-seconds", type=float, default=None,
        help="use only the first seconds of each reference track (faster)",
    )  # fmt: skip
    add_network_options(parser)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    networks = named_networks(args)
    for network in networks.values():
        network.to(memory_format=torch.channels_last)

    started = time.perf_counter()
    folders = {folder: discover_albums(folder)[0] for folder in args.dirs}
    evaluated = {t.path for tracks in folders.values() for t in tracks}
    reference_paths, _ = discover_audio(args.reference)
    overlap = sum(p in evaluated for p in reference_paths)
    reference_paths = [p for p in reference_paths if p not in evaluated]
    _, ref = method_vectors(reference_paths, networks, args.reference_max_seconds)
    result = {
        "reference": [str(r) for r in args.reference],
        "reference_tracks": len(ref[HANDCRAFTED]), "reference_overlap_dropped": overlap,
        "reference_max_seconds": args.reference_max_seconds, "folders": [],
    }  # fmt: skip
    for folder, tracks in folders.items():
        kept, x = method_vectors([t.path for t in tracks], networks, None)
        labels = np.array([tracks[i].album for i in kept])
        print(f"\n== {folder}: {len(labels)} tracks")
        methods = {name: score_transforms(x[name], ref[name], name, labels) for name in x}
        result["folders"].append({"dir": str(folder), "tracks": len(labels), "methods": methods})
    result["seconds"] = time.perf_counter() - started
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
