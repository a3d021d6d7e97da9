"""Which layer and pooling of the ResNet18 makes the best sound-alike embedding?

The catalog's embedding is the 512-d output of the last stage, averaged over
time and frequency (``embed()``), then over a track's 3-second segments. That is
one choice among several: an earlier stage keeps more of the timbre, max or
standard-deviation pooling keep what averaging blurs, and pooling over time only
keeps the frequency profile that MFCCs (the strongest baseline on the held-out
soundtracks) describe. This script scores each choice by the same-album
precision@5 of ``sonic evaluate-similarity``, on the same tracks in one run, with
the paired difference against the catalog's embedding, so that a change to what
the catalog stores can be judged before it is made.

    python docs/research/scripts/pooling_similarity.py /work/data/gamemusic-heldout \\
        --model shipped --model runs/pre_f.pt --random-seed 0 --json pooling.json

Each pooled vector is per segment; a track's vector is their mean; cosine
similarity as in the catalog. The variants: ``<stage>-<pool>`` for stages 3 and
4 and pools ``avg`` (stage 4 avg is the catalog's embedding), ``max``, ``std``,
and ``freq`` (mean over time only: channels x frequency bins, 2,048-d for either
stage).
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
from embeddings.training.dataset import load_audio  # noqa: E402
from embeddings.training.similarity_eval import discover_albums  # noqa: E402
from embeddings.training.similarity_metrics import precision_at_k  # noqa: E402

CATALOG = "stage4-avg"


def stage_outputs(network: nn.Module, x: torch.Tensor) -> dict[int, torch.Tensor]:
    """Outputs of the third and fourth residual stages, (n, channels, freq, time)."""
    n = network.net
    h = n.maxpool(n.relu(n.bn1(n.conv1(x))))
    third = n.layer3(n.layer2(n.layer1(h)))
    return {3: third, 4: n.layer4(third)}


def pooled(stages: dict[int, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every variant's per-segment vector."""
    out = {}
    for stage, t in stages.items():
        out[f"stage{stage}-avg"] = t.mean((2, 3))
        out[f"stage{stage}-max"] = t.amax((2, 3))
        out[f"stage{stage}-std"] = t.std((2, 3))
        out[f"stage{stage}-freq"] = t.mean(3).flatten(1)
    return out


@torch.inference_mode()
def track_vectors(network: nn.Module, segments: np.ndarray, batch: int = 64) -> dict:
    """Mean over the track's segments of every variant."""
    sums: dict[str, torch.Tensor] = {}
    for start in range(0, len(segments), batch):
        x = torch.from_numpy(np.ascontiguousarray(segments[start : start + batch])).unsqueeze(1)
        for name, v in pooled(stage_outputs(network, x)).items():
            total = v.double().sum(0)
            sums[name] = sums[name] + total if name in sums else total
    return {name: (v / len(segments)).numpy() for name, v in sums.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="a folder of albums, one sub-folder each")
    add_network_options(parser)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    networks = named_networks(args)

    started = time.perf_counter()
    fe = FrontendConfig()
    tracks, _ = discover_albums(args.dir)
    vectors: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in networks}
    albums: list[str] = []
    for i, track in enumerate(tracks, 1):
        try:
            audio, _, _ = load_audio(track.path, fe.sample_rate)
        except Exception as exc:  # a broken file is reported, not fatal
            print(f"skipped {track.path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        if not np.any(audio):
            print(f"skipped {track.path}: silent", file=sys.stderr)
            continue
        segments = features_by_frontend(audio, networks)
        for name, (network, frontend) in networks.items():
            for variant, v in track_vectors(network, segments[frontend]).items():
                vectors[name].setdefault(variant, []).append(v)
        albums.append(track.album)
        print(f"[{i}/{len(tracks)}] {track.album}/{track.path.name}", file=sys.stderr)

    labels = np.array(albums)
    result = {"dir": str(args.dir), "tracks": len(labels), "networks": {}}
    for name, variants in vectors.items():
        scores = {v: precision_at_k(np.stack(x), labels) for v, x in variants.items()}
        base = scores[CATALOG]
        print(f"\n{name}: same-album precision@5, minus {CATALOG} (the catalog's embedding)")
        best_first = dict(sorted(scores.items(), key=lambda kv: -kv[1].mean()))
        result["networks"][name] = paired_rows(best_first, base, "minus_catalog", 12)
    result["seconds"] = time.perf_counter() - started
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
