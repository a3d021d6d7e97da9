"""Which torch device to run on: the GPU when present unless the caller asks otherwise.

Its own module, importing torch alone, so that ``sonic stems`` (Demucs) shares the
rule without importing :mod:`embeddings.inference`, which loaded torchvision and
with it torch._dynamo, sympy and triton: about 190 MB of RSS and seconds of
start-up in every stems process, cache hits included. (The network no longer
needs torchvision, :mod:`embeddings.resnet`; inference still loads the model code.)
"""

from __future__ import annotations

import torch


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` ("cpu", "cuda:1", ...), or the GPU if there is one for None or "auto"."""
    if requested and requested != "auto":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
