"""The contrastive objective (NT-Xent, as in SimCLR) and the heads it trains through.

A batch holds two views of each of N tracks, 2N views. Each view's positive is the
other view of its track; the 2N - 2 views of the other tracks are its negatives.
NT-Xent is a softmax cross-entropy over cosine similarities divided by a
temperature: it pulls each positive pair together and pushes everything else
apart, so a view must be recognisable as its track among all others in the batch.

The loss is applied to the output of a small projection head, not to the backbone
embedding itself: SimCLR found that the layer *before* the head keeps more of what
the augmentations remove (and what downstream tasks need), so the embedding the
catalog keeps is ``embed()``, and the projection head is thrown away.

``supervised_nt_xent`` generalises NT-Xent to any number of positives per view
(SupCon, Khosla et al. 2020): views that share a label are positives, all other
views negatives. With one label per track it is NT-Xent; with one label per
album (``sonic pretrain --positives album``) crops of *different* tracks of one
album must find each other, which is what same-album search asks of the
embedding, where NT-Xent alone pushes those tracks apart.

The distillation head maps the same ``embed()`` to a teacher's output space, for
the optional cosine loss against cached teacher vectors; it is thrown away too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ProjectionHead(nn.Sequential):
    """Linear - BatchNorm - ReLU - Linear, from the embedding to the contrastive space."""

    def __init__(self, in_dim: int, hidden: int = 512, out_dim: int = 128) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim),
        )


class DistillationHead(nn.Sequential):
    """A one-hidden-layer MLP from the embedding to the teacher's dimension."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)
        )


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """NT-Xent loss of paired views: row i of ``z1`` and row i of ``z2`` are positives."""
    if z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError("need two equally shaped batches of at least two views")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


def supervised_nt_xent(
    z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.2
) -> torch.Tensor:
    """Multi-positive NT-Xent: each view's positives are the other views with its label.

    For every view, the mean over its positives of the log-softmax (over all other
    views) of the positive's similarity; views without a positive are skipped.
    """
    if z.shape[0] != labels.shape[0] or z.shape[0] < 2:
        raise ValueError("need at least two views and one label per view")
    n = z.shape[0]
    z = F.normalize(z.float(), dim=1)
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = F.log_softmax(logits, dim=1)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    counts = positives.sum(1)
    has = counts > 0
    if not has.any():
        raise ValueError("no view has a positive: every label appears once")
    summed = log_prob.masked_fill(~positives, 0.0).sum(1)
    return -(summed[has] / counts[has]).mean()


@torch.no_grad()
def pair_statistics(z1: torch.Tensor, z2: torch.Tensor) -> dict[str, float]:
    """How well the views pair up: mean positive and negative cosine, top-1 accuracy.

    ``top1`` is the fraction of views whose most similar other view is their own
    positive (chance is 1 / (2N - 1)).
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    positive = sim[torch.arange(2 * n), targets]
    negatives = torch.ones_like(sim, dtype=torch.bool)
    negatives[torch.arange(2 * n), torch.arange(2 * n)] = False
    negatives[torch.arange(2 * n), targets] = False
    top1 = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), -2).argmax(1)
    return {
        "positive_cosine": float(positive.mean()),
        "negative_cosine": float(sim[negatives].mean()),
        "top1": float((top1 == targets).float().mean()),
    }


def cosine_distance(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(prediction, target) over rows (0 when perfectly aligned)."""
    return (1 - F.cosine_similarity(prediction.float(), target.float(), dim=1)).mean()
