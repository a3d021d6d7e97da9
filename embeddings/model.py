"""Network definitions, kept apart from weight loading and from inference.

Every architecture exposes the same small interface so training, ingest and the
explanations never special-case one:

- ``embed(x)``: the penultimate-layer vector (the sound-alike embedding),
- ``classify(embedding)``: genre logits from that vector,
- ``forward(x)``: logits, for training and attribution methods,
- ``embedding_dim``: length of the embedding,
- ``cam_layer``: the last convolutional stage, for Grad-CAM,
- ``classifier``: the genre head, the only part that depends on the genre list;
  everything else is the *backbone*, which self-supervised pretraining learns and
  ``sonic train --init`` carries over (:func:`backbone_state`, :func:`load_backbone`).

Inputs are ``(batch, 1, n_mels, frames)`` normalised log-mel segments.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from embeddings.resnet import resnet18


class GenreResNet18(nn.Module):
    """torchvision's ResNet18 with a one-channel stem and an n-genre head."""

    embedding_dim = 512

    def __init__(self, n_genres: int) -> None:
        super().__init__()
        net = resnet18(weights=None, num_classes=n_genres)
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.net = net

    @property
    def cam_layer(self) -> nn.Module:
        return self.net.layer4

    @property
    def classifier(self) -> nn.Module:
        return self.net.fc

    def cam_activations(self, x: torch.Tensor) -> torch.Tensor:
        """The cam layer's output (batch, 512, h, w): what :meth:`embed` averages.

        Because the embedding is the plain spatial mean of these maps and the head
        one linear layer on it, Grad-CAM's channel weights are exactly the head's
        weights divided by ``h * w``, so the map needs no backward pass
        (:func:`embeddings.gradcam.class_activation_map`).
        """
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.net.avgpool(self.cam_activations(x)), 1)

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.net.fc(embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))

    def fused_for_inference(self) -> GenreResNet18:
        """An eval-only copy with every batch norm folded into its convolution.

        Folding removes a fifth of the inference work on CPU (measured: 131 to 157
        segments/s on one core) and gives inference its own module, so Grad-CAM's
        hooks on this one never run inside a concurrent inference call.
        """
        fused = copy.deepcopy(self).eval()
        net = fused.net
        net.conv1, net.bn1 = fuse_conv_bn_eval(net.conv1, net.bn1), nn.Identity()
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            for block in stage:
                block.conv1, block.bn1 = fuse_conv_bn_eval(block.conv1, block.bn1), nn.Identity()
                block.conv2, block.bn2 = fuse_conv_bn_eval(block.conv2, block.bn2), nn.Identity()
                if block.downsample is not None:
                    conv, bn = block.downsample
                    block.downsample = nn.Sequential(fuse_conv_bn_eval(conv, bn))
        return fused


def inference_copy(network: nn.Module) -> nn.Module:
    """The fastest eval-only copy an architecture offers (a plain copy otherwise)."""
    fuse = getattr(network, "fused_for_inference", None)
    return fuse() if callable(fuse) else copy.deepcopy(network).eval()


from embeddings.architectures import GenreCRNN, GenreTransformer, GenreVGG  # noqa: E402

ARCHITECTURES: dict[str, Callable[[int], nn.Module]] = {
    "resnet18": GenreResNet18,
    "vgg": GenreVGG,
    "crnn": GenreCRNN,
    "transformer": GenreTransformer,
}


def build_model(arch: str, n_genres: int) -> nn.Module:
    """Instantiate a registered architecture with freshly initialised weights.

    ``n_genres=0`` gives a backbone with an empty head (a pretrained embedding
    network that has not been taught any genres yet).
    """
    try:
        factory = ARCHITECTURES[arch]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {arch!r}; choose one of: {known}") from None
    with warnings.catch_warnings():
        # an empty head makes torch warn that initialising it does nothing, which is fine
        warnings.filterwarnings("ignore", "Initializing zero-element tensors")
        return factory(n_genres)


def build_seeded_model(arch: str, n_genres: int, seed: int) -> nn.Module:
    """A fresh network whose weights depend only on ``seed``, in eval mode.

    Leaves torch's global random state as it found it, so asking for a reference
    random network never changes what a caller's own seeded code draws next.
    """
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        network = build_model(arch, n_genres)
    finally:
        torch.random.set_rng_state(state)
    return network.eval()


def classifier_keys(network: nn.Module) -> set[str]:
    """State-dict keys of the genre head (``network.classifier``)."""
    head = network.classifier
    prefix = next(name for name, module in network.named_modules() if module is head)
    return {f"{prefix}.{key}" for key in head.state_dict()}


def backbone_state(state: dict[str, torch.Tensor], network: nn.Module) -> dict[str, torch.Tensor]:
    """``state`` without the genre head of ``network``'s architecture."""
    head = classifier_keys(network)
    return {k: v for k, v in state.items() if k not in head}


def load_backbone(network: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy every weight except the genre head from ``state`` into ``network``.

    The head keeps its fresh initialisation: the genre count may differ, and a head
    trained for other genres (or none) is no head start. Every backbone tensor must
    be present and of the same shape, so a checkpoint of another architecture fails
    loudly instead of half-loading.
    """
    backbone = backbone_state(state, network)
    own = backbone_state(network.state_dict(), network)
    missing = sorted(set(own) - set(backbone))
    unexpected = sorted(set(backbone) - set(own))
    if missing or unexpected:
        raise ValueError(
            "checkpoint backbone does not fit this network: "
            f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}"
        )
    mismatched = [k for k in own if own[k].shape != backbone[k].shape]
    if mismatched:
        raise ValueError(f"checkpoint backbone has other shapes for {mismatched[:3]}")
    network.load_state_dict(backbone, strict=False)
