"""A tiny randomly initialised HTDemucs saved as a local Demucs weights folder.

The folder is what ``demucs.pretrained.get_model(name, repo=folder)`` loads and what
``sonic serve --models-dir`` / ``sonic stems --models-dir`` expect: ``NAME.yaml``
naming one signature, and ``<signature>-<sha256[:8]>.th`` holding Demucs' model
package (class, init arguments, state) written by Demucs' own
``save_with_checksum``. Tiny channels and one transformer layer make a one-second
chunk cost milliseconds on a CPU, so tests separate for real without a download.
"""

from __future__ import annotations

from pathlib import Path

import torch
from demucs.htdemucs import HTDemucs
from demucs.states import get_state, save_with_checksum

SOURCES = ["drums", "bass", "other", "vocals"]


def write_tiny_weights(
    folder: Path, name: str = "htdemucs", signature: str = "5eed0001", seed: int = 0
) -> Path:
    """Write ``NAME.yaml`` and its checksummed package into ``folder``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = HTDemucs(
        sources=SOURCES, channels=2, depth=4, nfft=1024, t_layers=1, t_heads=1,
        bottom_channels=0, dconv_comp=1, t_hidden_scale=1.0, segment=1,
    )  # fmt: skip
    args, kwargs = model._init_args_kwargs
    package = {"klass": HTDemucs, "args": args, "kwargs": kwargs, "state": get_state(model, None)}
    save_with_checksum(package, folder / f"{signature}.th")  # -> SIG-<sha256[:8]>.th
    (folder / f"{name}.yaml").write_text(f"models: ['{signature}']\n")
    return folder
