"""The networks a similarity bench script compares, chosen the same way in each.

``--model`` takes checkpoints or ``shipped`` (repeatable; default the shipped
model) and ``--random-seed`` adds randomly initialised ResNet18s; each network is
named after what was asked for and its model id, so a JSON result says which
weights ``shipped`` meant when it ran. Each network comes with the front end it was
trained on (a checkpoint from before the band limit has none), and
:func:`features_by_frontend` computes a track's segments once per front end.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from embeddings.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from embeddings.frontend import FrontendConfig, batch_features, split_segments
from embeddings.training.similarity_eval import random_network


def add_network_options(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--random-seed`` and ``--threads``."""
    parser.add_argument(
        "--model", action="append", default=[], help="checkpoint, or 'shipped' (repeatable)"
    )
    parser.add_argument("--random-seed", type=int, action="append", default=[])
    parser.add_argument("--threads", type=int, default=2)


def named_networks(args: argparse.Namespace) -> dict[str, tuple[nn.Module, FrontendConfig]]:
    """The networks ``args`` asks for (eval mode) and their front ends, by name.

    Also sets torch's thread count.
    """
    torch.set_num_threads(args.threads)
    networks: dict[str, tuple[nn.Module, FrontendConfig]] = {}
    for spec in args.model or ["shipped"]:
        model = load_checkpoint(DEFAULT_CHECKPOINT if spec == "shipped" else Path(spec))
        networks[f"{spec} ({model.model_id})"] = (model.network.eval(), model.frontend)
    for seed in args.random_seed:
        networks[f"random resnet18 seed {seed}"] = (random_network(seed), FrontendConfig())
    return networks


def features_by_frontend(
    audio: np.ndarray, networks: dict[str, tuple[nn.Module, FrontendConfig]]
) -> dict[FrontendConfig, np.ndarray]:
    """The track's normalised segments under each front end the networks use."""
    out: dict[FrontendConfig, np.ndarray] = {}
    for _, fe in networks.values():
        if fe not in out:
            out[fe] = batch_features(split_segments(audio, fe), fe)
    return out
