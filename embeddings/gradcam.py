"""Grad-CAM over the last convolutional stage, and where in frequency it looks.

Ingest runs it once per track on a short window of its most confident segments.
For the ResNet18 (global average pooling, then one linear layer) Grad-CAM is exactly
the class activation map, computed from one forward pass and the head's weights
(:func:`class_activation_map`); otherwise one batched forward pass over those few
segments and a backward pass through the layers after the cam layer only. The
map is upsampled to the mel grid (128 x 130 per segment), so it lines up with the
spectrogram it explains.

Band focus sums the heatmap's mass per mel band and splits it at the edges of
:mod:`embeddings.bands` (250 Hz and 4 kHz): low (bass and kick), mid (vocals and most
instruments), high (cymbals, air, sibilance).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embeddings.bands import HIGH_HZ, LOW_HZ
from embeddings.frontend import FrontendConfig, mel_band_edges


def grad_cam(network: nn.Module, features: np.ndarray, target: int) -> np.ndarray:
    """Grad-CAM maps (n, n_mels, frames) for class ``target`` over (n, n_mels, frames) features.

    The cam layer's output is swapped for a leaf tensor during the forward pass, so
    the backward pass runs only through the layers after it (for ResNet18: pooling
    and one linear layer). Channel weights are spatially averaged gradients of the
    target logit; the map is the ReLU of the weighted channel sum, upsampled to the
    mel grid.
    """
    store: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        leaf = output.detach().requires_grad_(True)
        store["activation"] = leaf
        return leaf

    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).unsqueeze(1)
    # With no parameter asking for gradients, autograd records nothing before the
    # cam layer: the forward pass costs what inference costs.
    frozen = [p for p in network.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    handle = network.cam_layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = network(x.to(next(network.parameters()).device))
            act = store["activation"]
            grads = torch.autograd.grad(logits[:, target].sum(), act)[0]
    finally:
        handle.remove()
        for p in frozen:
            p.requires_grad_(True)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act.detach()).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam.float(), size=tuple(features.shape[1:]), mode="bilinear")
    return cam[:, 0].cpu().numpy()


def exact_cam(network: nn.Module) -> bool:
    """Whether Grad-CAM of ``network`` equals its class activation map (CAM).

    True when the network exposes its cam layer's maps (``cam_activations``) and the
    embedding is their spatial mean fed to one linear layer (the ResNet18 here:
    ``embed`` is global average pooling of ``layer4``, ``classify`` is ``fc``).
    Then the target logit is ``sum_c w_c * mean(A_c) + b``, its gradient at every
    position of ``A_c`` is ``w_c / (h * w)``, Grad-CAM's channel weight (the spatial
    mean of that gradient) is the same, and the map is ``relu(sum_c w_c A_c) / (h w)``.
    """
    return callable(getattr(network, "cam_activations", None)) and isinstance(
        getattr(network, "classifier", None), nn.Linear
    )


def class_activation_map(network: nn.Module, features: np.ndarray, target: int) -> np.ndarray:
    """:func:`grad_cam` without a backward pass, for networks where :func:`exact_cam` holds.

    One forward pass to the cam layer, no autograd: the channel weights are the head's
    row for ``target`` (see :func:`exact_cam`). Ingest runs it on its folded inference
    copy, which has no hooks and so may run beside concurrent inference calls.
    """
    if not exact_cam(network):
        raise ValueError(f"{type(network).__name__} has no exact CAM; use grad_cam")
    parameter = next(network.parameters())
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).unsqueeze(1)
    x = x.to(parameter.device)
    if parameter.dim() == 4 and parameter.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        act = network.cam_activations(x)
        weights = network.classifier.weight[target].to(act.dtype) / (act.shape[2] * act.shape[3])
        cam = F.relu(torch.einsum("nchw,c->nhw", act, weights)).unsqueeze(1)
        cam = F.interpolate(cam.float(), size=tuple(features.shape[1:]), mode="bilinear")
    return cam[:, 0].cpu().numpy()


@lru_cache(maxsize=8)
def mel_band_centres(config: FrontendConfig) -> np.ndarray:
    """Centre frequency in Hz of each mel band (as librosa's filter bank places them).

    Computed with the front end's own mel scale: asking librosa for these numbers
    costs the ingest process about 60 MB of imports (numba and friends).
    """
    return mel_band_edges(config)[1:-1]


@dataclass
class BandFocus:
    low: float
    mid: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"low": self.low, "mid": self.mid, "high": self.high}


def band_focus(cam: np.ndarray, config: FrontendConfig) -> BandFocus:
    """Share of heatmap mass in the low, mid and high bands; shares sum to 1."""
    per_band = np.asarray(cam, dtype=np.float64)
    per_band = per_band.reshape(-1, config.n_mels, per_band.shape[-1]).sum(axis=(0, 2))
    centres = mel_band_centres(config)
    low = float(per_band[centres < LOW_HZ].sum())
    high = float(per_band[centres > HIGH_HZ].sum())
    mid = float(per_band.sum()) - low - high
    total = low + mid + high
    if total <= 0:  # a flat zero map: no evidence anywhere; say so evenly
        return BandFocus(1 / 3, 1 / 3, 1 / 3)
    return BandFocus(low / total, mid / total, high / total)
