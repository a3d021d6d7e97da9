"""The networks a similarity bench script compares, chosen the same way in each.

``--model`` takes checkpoints or ``shipped`` (repeatable; default the shipped
model) and ``--random-seed`` adds randomly initialised ResNet18s; each network is
named after what was asked for and its model id, so a JSON result says which
weights ``shipped`` meant when it ran.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from embeddings.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from embeddings.similarity_eval import random_network


def add_network_options(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--random-seed`` and ``--threads``."""
    parser.add_argument(
        "--model", action="append", default=[], help="checkpoint, or 'shipped' (repeatable)"
    )
    parser.add_argument("--random-seed", type=int, action="append", default=[])
    parser.add_argument("--threads", type=int, default=2)


def named_networks(args: argparse.Namespace) -> dict[str, nn.Module]:
    """The networks ``args`` asks for, in eval mode, by name; sets torch's thread count."""
    torch.set_num_threads(args.threads)
    networks: dict[str, nn.Module] = {}
    for spec in args.model or ["shipped"]:
        model = load_checkpoint(DEFAULT_CHECKPOINT if spec == "shipped" else Path(spec))
        networks[f"{spec} ({model.model_id})"] = model.network.eval()
    for seed in args.random_seed:
        networks[f"random resnet18 seed {seed}"] = random_network(seed)
    return networks
