"""Training one genre network on cached features.

The recipe, and why:

- every epoch draws ``crops_per_track`` random 3-second crops from each training
  clip (``augment.random_crops``): far more distinct views than a fixed slicing;
- SpecAugment masks and mixup on every batch, label smoothing on the loss: with
  tens of clips per genre, regularisation matters more than capacity;
- AdamW with a one-cycle schedule (warm-up, then cosine decay) over the maximum
  number of epochs;
- early stopping on the *validation loss* of held-out validation tracks, scored
  on exactly the segments inference would cut, keeping the best weights; when no
  validation tracks are given (the final all-data model) it trains a fixed number
  of epochs, chosen from the cross-validation;
- bf16 autocast and channels-last tensors on CPUs with native bf16 (about twice
  as fast as fp32 for the convolutional nets); the transformer runs in fp32, which
  is faster for it on CPU;
- optionally a wall-clock budget (``TrainConfig.max_minutes``, ``sonic train
  --minutes``): after the first epoch the number of epochs is cut to what fits
  the budget, and the one-cycle schedule re-planned to end there, so a short run
  still anneals its learning rate instead of stopping at the peak; training also
  stops once the budget is spent. The epochs actually run are recorded (the
  result then depends on the machine's speed: for a reproducible run give
  ``--epochs`` that fit and keep the budget as a cap);
- optionally (``TrainConfig.init_checkpoint``, ``sonic train --init``) every
  weight but the genre head starts from a checkpoint, typically a backbone that
  ``sonic pretrain`` learnt from unlabelled audio; the head starts fresh, and
  ``backbone_lr`` can slow the backbone down relative to the head, so that 80
  labelled clips adjust what pretraining learnt instead of overwriting it.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embeddings.frontend import FrontendConfig
from embeddings.inference import cpu_has_native_bf16
from embeddings.model import build_model, load_backbone
from embeddings.training.augment import mixup, random_crops, spec_augment
from embeddings.training.evaluate import segment_probabilities

# Measured on a 2-core AVX512-BF16 CPU: bf16 doubles the conv nets' training speed
# but slows the transformer's attention several-fold.
FP32_ARCHS: frozenset[str] = frozenset({"transformer"})


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run; stored in metrics.json and the checkpoint."""

    arch: str = "resnet18"
    max_epochs: int = 30
    crops_per_track: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.3
    freq_masks: int = 2
    freq_width: int = 16
    time_masks: int = 2
    time_width: int = 20
    patience: int = 8
    seed: int = 0
    precision: str = "auto"  # auto, bf16 or fp32
    threads: int | None = None
    init_checkpoint: str | None = None  # backbone weights to start from (not the head)
    backbone_lr: float = 1.0  # the backbone's peak learning rate, as a fraction of lr
    max_minutes: float | None = None  # wall-clock budget per network (None: no budget)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    val_loss: float | None
    val_accuracy: float | None  # segment level, for the learning curve only
    lr: float
    seconds: float


@dataclass
class TrainResult:
    network: nn.Module
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    planned_epochs: int = 0  # after a budget re-plan, if any
    stopped_by_budget: bool = False

    def history_dicts(self) -> list[dict]:
        return [asdict(h) for h in self.history]


def training_dtype(arch: str, requested: str = "auto") -> torch.dtype:
    if requested == "fp32" or (requested == "auto" and arch in FP32_ARCHS):
        return torch.float32
    if requested == "bf16":
        return torch.bfloat16
    if requested != "auto":
        raise ValueError(f"unknown precision {requested!r}; choose auto, fp32 or bf16")
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def _val_loss(
    network: nn.Module,
    segments: list[np.ndarray],
    labels: np.ndarray,
    dtype: torch.dtype,
) -> tuple[float, float]:
    probs = segment_probabilities(network, segments, dtype=dtype)
    flat = np.concatenate(probs)
    truth = np.concatenate([np.full(len(p), y) for p, y in zip(probs, labels, strict=True)])
    loss = float(-np.log(np.clip(flat[np.arange(len(flat)), truth], 1e-7, 1.0)).mean())
    return loss, float((flat.argmax(1) == truth).mean())


def parameter_groups(
    network: nn.Module, lr: float, backbone_lr: float
) -> tuple[list[dict], list[float]]:
    """Optimiser groups and their peak learning rates: head at ``lr``, backbone scaled.

    One group when the scale is 1, so the default recipe is unchanged.
    """
    if backbone_lr < 0:
        raise ValueError(f"backbone_lr is a fraction of lr, >= 0; got {backbone_lr}")
    if backbone_lr == 1.0:
        return [{"params": list(network.parameters())}], [lr]
    head = {id(p) for p in network.classifier.parameters()}
    params = list(network.parameters())
    return (
        [
            {"params": [p for p in params if id(p) in head]},
            {"params": [p for p in params if id(p) not in head]},
        ],
        [lr, lr * backbone_lr],
    )


def one_cycle(
    optimiser: torch.optim.Optimizer, peaks: list[float], total_steps: int, done: int = 0
) -> torch.optim.lr_scheduler.OneCycleLR:
    """The recipe's one-cycle schedule over ``total_steps``, already ``done`` steps in.

    A fresh schedule is exactly the default recipe's; a re-planned one (a time
    budget shortened the run) continues from the step reached, on the shorter curve.
    """
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=peaks, total_steps=total_steps, pct_start=0.15
    )
    with warnings.catch_warnings():  # fast-forwarding: no optimiser step in between
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(min(done, total_steps - 1)):
            schedule.step()
    return schedule


def _epochs_within_budget(config: TrainConfig, elapsed_s: float, planned: int) -> int:
    """How many epochs fit ``config.max_minutes``, judged by the first one's time."""
    if not config.max_minutes or elapsed_s <= 0:
        return planned
    return max(1, min(planned, int(config.max_minutes * 60 // elapsed_s)))


def set_training_mode(network: nn.Module, backbone_lr: float) -> None:
    """Training mode, except a frozen backbone's batch norms, which keep their statistics.

    With ``backbone_lr`` 0 the backbone's weights do not move, but batch norm in
    training mode would still re-estimate its running statistics on the new data
    (augmented crops, mixed up): the backbone, and with it every embedding, would
    change after all.
    """
    network.train()
    if backbone_lr == 0:
        head = set(network.classifier.modules())
        for module in network.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module not in head:
                module.eval()


def train_network(
    train_clips: list[np.ndarray],
    train_labels: np.ndarray,
    n_genres: int,
    frontend: FrontendConfig,
    config: TrainConfig,
    val_segments: list[np.ndarray] | None = None,
    val_labels: np.ndarray | None = None,
    epochs: int | None = None,
    progress: Callable[..., object] | None = None,
    desc: str = "train",
    init_state: dict[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Train a ``config.arch`` network on whole-clip spectrograms.

    ``train_clips`` are unreferenced dB spectrograms (``dataset.log_power``);
    ``val_segments`` are front-end segments of validation tracks. ``epochs``
    overrides ``config.max_epochs`` (used, without validation, for the final model).
    ``progress`` is a tqdm-like factory: one bar per epoch over its batches.
    ``init_state`` (a state dict) or else ``config.init_checkpoint`` (a path)
    provides the starting backbone weights; without either the network is fresh.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    dtype = training_dtype(config.arch, config.precision)
    network = build_model(config.arch, n_genres)
    if init_state is None and config.init_checkpoint:
        from embeddings.checkpoint import load_checkpoint

        init_state = load_checkpoint(Path(config.init_checkpoint)).network.state_dict()
    if init_state is not None:
        load_backbone(network, init_state)
    network = network.to(memory_format=torch.channels_last)
    n_epochs = epochs or config.max_epochs
    steps_per_epoch = math.ceil(len(train_clips) * config.crops_per_track / config.batch_size)
    groups, peaks = parameter_groups(network, config.lr, config.backbone_lr)
    optimiser = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    schedule = one_cycle(optimiser, peaks, n_epochs * steps_per_epoch)
    labels = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    validate = val_segments is not None and val_labels is not None and len(val_segments) > 0
    result = TrainResult(network=network)
    best_loss, best_state, stale = math.inf, None, 0
    started = time.perf_counter()
    result.planned_epochs = n_epochs
    epoch = 0
    while epoch < n_epochs:
        epoch += 1
        t0 = time.perf_counter()
        set_training_mode(network, config.backbone_lr)
        crops, owner = random_crops(
            train_clips, config.crops_per_track, frontend.segment_frames, frontend.top_db, rng
        )
        order = torch.randperm(len(crops), generator=gen)
        batches = range(0, len(crops), config.batch_size)
        bar = (
            progress(total=len(batches), desc=f"{desc} epoch {epoch}/{n_epochs}", leave=False)
            if progress
            else None
        )
        total, seen = 0.0, 0
        for start in batches:
            idx = order[start : start + config.batch_size]
            if len(idx) < 2:  # batch norm needs two examples
                continue
            x = torch.from_numpy(crops[idx.numpy()]).unsqueeze(1)
            y = F.one_hot(labels[owner[idx.numpy()]], n_genres).float()
            x = spec_augment(
                x, gen, config.freq_masks, config.freq_width, config.time_masks, config.time_width
            )
            x, y = mixup(x, y, config.mixup_alpha, gen)
            if config.label_smoothing:
                y = y * (1 - config.label_smoothing) + config.label_smoothing / n_genres
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                logits = network(x)
            loss = torch.sum(-y * F.log_softmax(logits.float(), dim=1), dim=1).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if schedule.last_epoch + 1 < schedule.total_steps:
                schedule.step()
            total += loss.item() * len(idx)
            seen += len(idx)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total / max(1, seen):.3f}", refresh=False)
        if bar is not None:
            bar.close()
        val_loss = val_acc = None
        if validate:
            val_loss, val_acc = _val_loss(network, val_segments, val_labels, dtype)
        log = EpochLog(
            epoch=epoch,
            train_loss=total / max(1, seen),
            val_loss=val_loss,
            val_accuracy=val_acc,
            lr=float(optimiser.param_groups[0]["lr"]),
            seconds=time.perf_counter() - t0,
        )
        result.history.append(log)
        if progress is not None and hasattr(progress, "write"):
            progress.write(
                f"{desc} epoch {epoch:>3}: train loss {log.train_loss:.3f}"
                + (f", val loss {val_loss:.3f}, val seg acc {val_acc:.2f}" if validate else "")
                + f" ({log.seconds:.0f} s)"
            )
        if validate:
            if val_loss < best_loss - 1e-4:
                best_loss, stale, result.best_epoch = val_loss, 0, epoch
                best_state = copy.deepcopy(network.state_dict())
            else:
                stale += 1
                if stale >= config.patience:
                    break
        else:
            result.best_epoch = epoch
        spent = time.perf_counter() - started
        if epoch == 1 and config.max_minutes:
            fit = _epochs_within_budget(config, spent, n_epochs)
            if fit < n_epochs:
                n_epochs = result.planned_epochs = fit
                schedule = one_cycle(optimiser, peaks, n_epochs * steps_per_epoch,
                                     schedule.last_epoch)  # fmt: skip
                if progress is not None and hasattr(progress, "write"):
                    progress.write(f"{desc}: {fit} epochs fit --minutes {config.max_minutes:g}")
        if config.max_minutes and spent >= config.max_minutes * 60 and epoch < n_epochs:
            result.stopped_by_budget = True
            break
    if best_state is not None:
        network.load_state_dict(best_state)
    network.eval()
    result.seconds = time.perf_counter() - started
    return result
