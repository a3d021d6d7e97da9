"""Attribution maps for any genre: Grad-CAM, Integrated Gradients and occlusion.

Grad-CAM is cheap and coarse (the last convolutional stage is 4 x 5 cells per
segment); Integrated Gradients (captum) attributes to every mel bin and frame and
comes with a completeness check (the convergence delta); occlusion slides a
neutral patch over the spectrogram and measures how much the genre's probability
drops, which needs no gradients at all. All return maps shaped like the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from embeddings.gradcam import grad_cam

METHODS = ("gradcam", "ig", "occlusion")


@dataclass
class Attribution:
    method: str
    target: int
    maps: np.ndarray  # (n, n_mels, frames); larger = more evidence for the target
    convergence_delta: float | None = None  # IG only: |sum(attr) - (f(x) - f(baseline))|


def _inputs(features: np.ndarray, network: nn.Module) -> torch.Tensor:
    device = next(network.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).unsqueeze(1)
    return x.to(device)


def integrated_gradients(
    network: nn.Module, features: np.ndarray, target: int, steps: int = 32
) -> Attribution:
    """IG from an all-zero baseline (the mean of a normalised segment) to the input."""
    from captum.attr import IntegratedGradients

    x = _inputs(features, network).requires_grad_(True)
    ig = IntegratedGradients(network)
    with torch.enable_grad():
        attr, delta = ig.attribute(
            x, baselines=torch.zeros_like(x), target=target, n_steps=steps,
            internal_batch_size=max(1, 2 * steps), return_convergence_delta=True,
        )  # fmt: skip
    return Attribution(
        "ig", target, attr[:, 0].detach().cpu().numpy(), float(delta.abs().max().item())
    )


def occlusion(
    network: nn.Module,
    features: np.ndarray,
    target: int,
    window: tuple[int, int] = (16, 10),
    stride: tuple[int, int] = (8, 5),
) -> Attribution:
    """Drop in the target's softmax probability when a patch is set to the mean (0)."""
    from captum.attr import Occlusion

    def probability(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(network(x), dim=1)

    x = _inputs(features, network)
    with torch.no_grad():
        attr = Occlusion(probability).attribute(
            x, target=target, sliding_window_shapes=(1, *window), strides=(1, *stride),
            baselines=0.0,
        )  # fmt: skip
    return Attribution("occlusion", target, attr[:, 0].cpu().numpy())


def attribute(network: nn.Module, features: np.ndarray, target: int, method: str) -> Attribution:
    """One of :data:`METHODS` for class ``target`` over (n, n_mels, frames) features."""
    if method == "gradcam":
        return Attribution("gradcam", target, grad_cam(network, features, target))
    if method == "ig":
        return integrated_gradients(network, features, target)
    if method == "occlusion":
        return occlusion(network, features, target)
    raise ValueError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")
