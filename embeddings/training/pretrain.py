"""Self-supervised pretraining of the embedding network on unlabelled audio.

A hundred labelled clips cannot teach a ResNet18 what music sounds like; a
library of unlabelled tracks can, if the task needs no labels. The task here is
SimCLR/COLA-style contrastive learning:

- each step draws N tracks and cuts two random 3-second crops of each, at
  different positions, giving 2N views; by default (``views="crops"`` preset) a
  view is only masked, so the two views share the track's mix and colour; the
  ``full`` preset also warps tempo and pitch, applies a random EQ and adds noise
  (``view_augment``), which teaches invariance to exactly what makes two tracks
  of one album sound alike;
- the backbone (the genre model's architecture and front end) embeds every view,
  a projection head maps the embedding to 128 dimensions, and NT-Xent
  (``contrastive.nt_xent``) asks every view to pick out the other view of its
  track among all 2N - 1;
- with ``positives="album"`` a step draws a few albums (a track's album is its
  folder) and several tracks of each, and the multi-positive loss
  (``contrastive.supervised_nt_xent``) makes every crop find the crops of the
  other tracks of its album as well as its own: NT-Xent alone treats two tracks
  of one album as negatives and teaches the network to tell them apart;
- optionally a distillation head predicts a cached teacher's output for the
  same seconds of audio (``teacher``), with a cosine loss added to NT-Xent.

The embedding kept is the backbone's ``embed()``; the heads are discarded. The
result is a ``backbone`` checkpoint: same format, front end and model id scheme
as genre checkpoints, with no genres; ``sonic train --init`` fine-tunes it.

The run is planned for its budget: ``steps`` and/or ``minutes``, whichever ends
first. The learning-rate schedule (linear warm-up, then cosine decay to zero) is a
function of the *fraction of the budget spent*, measured every step as the larger
of steps done / steps and seconds spent / seconds allowed. A time-bounded run
therefore finishes its schedule when its time is up, however fast the machine is
or however its speed changes while other jobs share it.

This module is the step loop and its schedule; the run around it (discovery,
decoding, the teacher's targets, saving) is :mod:`embeddings.training.pretrain_run`,
the track samplers :mod:`embeddings.training.track_samplers`, and the losses, views,
teachers and corpus have modules of their own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from embeddings.frontend import FrontendConfig
from embeddings.inference import pick_device, pick_precision
from embeddings.training.contrastive import (
    DistillationHead,
    ProjectionHead,
    cosine_distance,
    nt_xent,
    pair_statistics,
    supervised_nt_xent,
)
from embeddings.training.teacher import DEFAULT_LAYER, TeacherTrack, view_targets
from embeddings.training.track_samplers import AlbumSampler, TrackSampler, album_labels
from embeddings.training.train import training_dtype
from embeddings.training.unlabelled import UnlabelledTrack
from embeddings.training.view_augment import (
    VIEW_PRESETS,
    ViewConfig,
    crop_seconds,
    cut_windows,
    draw_crops,
    make_views,
)

Progress = Callable[..., object]
POSITIVES = ("track", "album")  # what a view must find: its own track, or its album


@dataclass
class PretrainConfig:
    """Hyper-parameters of one pretraining run; stored in the checkpoint and the log."""

    arch: str = "resnet18"
    batch_size: int = 64  # views per step: two views of batch_size // 2 tracks
    steps: int | None = None
    minutes: float | None = 30.0
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of the budget spent warming the learning rate up
    temperature: float = 0.2
    projection_dim: int = 128
    teacher_layer: str = DEFAULT_LAYER
    teacher_weight: float = 1.0
    max_seconds: float | None = 90.0
    seed: int = 0
    precision: str = "auto"
    threads: int | None = None
    device: str | None = None  # None or "auto": the GPU when present
    views: ViewConfig = field(default_factory=lambda: VIEW_PRESETS["crops"])
    positives: str = "track"  # "track" (NT-Xent) or "album" (tracks of one folder)
    tracks_per_album: int = 4  # with positives="album": tracks drawn from each album

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PretrainResult:
    network: nn.Module
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    views: int = 0
    seconds: float = 0.0
    stopped: str = ""  # steps, time or interrupted
    device: str = "cpu"
    precision: str = "fp32"

    @property
    def views_per_second(self) -> float:
        return self.views / self.seconds if self.seconds > 0 else 0.0


def learning_rate(spent: float, config: PretrainConfig) -> float:
    """Linear warm-up over the first ``warmup`` of the budget, then cosine to zero."""
    spent = min(max(spent, 0.0), 1.0)
    if config.warmup > 0 and spent < config.warmup:
        return config.lr * max(spent / config.warmup, 0.01)
    tail = (spent - config.warmup) / max(1e-9, 1 - config.warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * tail))


def pretrain_network(
    network: nn.Module,
    tracks: Sequence[UnlabelledTrack],
    frontend: FrontendConfig,
    config: PretrainConfig,
    teacher: Sequence[TeacherTrack | None] | None = None,
    teacher_dim: int = 0,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> PretrainResult:
    """Train ``network`` (anything with ``embed()`` and ``embedding_dim``) contrastively.

    ``teacher`` (aligned with ``tracks``, ``None`` where a track has no cache entry)
    adds the distillation loss. ``progress`` is a tqdm-like factory for one bar.
    """
    if config.steps is None and not config.minutes:
        raise ValueError("give a budget: steps, minutes or both")
    if len(tracks) < 2:
        raise ValueError(f"contrastive pretraining needs at least two tracks, got {len(tracks)}")
    if config.batch_size < 4 or config.batch_size % 2:
        raise ValueError("batch size counts views, two per track: an even number >= 4")
    if config.positives not in POSITIVES:
        raise ValueError(f"positives must be one of {POSITIVES}, not {config.positives!r}")
    albums = album_labels(tracks)
    if config.positives == "album" and len(np.unique(albums)) < 2:
        raise ValueError("album positives need tracks in at least two folders (albums)")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    device = pick_device(config.device)
    if device.type == "cpu":
        dtype = training_dtype(config.arch, config.precision)
    else:  # bf16 where the GPU has it; fp16 would need loss scaling, so fp32 instead
        dtype = pick_precision(device, config.precision)
        dtype = torch.float32 if dtype == torch.float16 else dtype

    dim = int(network.embedding_dim)
    projection = ProjectionHead(dim, out_dim=config.projection_dim)
    use_teacher = bool(teacher) and teacher_dim > 0 and config.teacher_weight > 0
    distil = DistillationHead(dim, teacher_dim) if use_teacher else None
    modules = nn.ModuleList([network, projection] + ([distil] if distil else []))
    modules.to(device).train()
    network.to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(
        modules.parameters(), lr=learning_rate(0.0, config), weight_decay=config.weight_decay
    )

    specs = [t.log_power for t in tracks]
    lengths = np.array([t.frames for t in tracks], dtype=np.int64)
    offsets = np.array([t.offset_s for t in tracks], dtype=np.float64)
    frames = frontend.segment_frames
    per_step = min(config.batch_size // 2, len(tracks))
    sampler = (
        AlbumSampler(albums, config.tracks_per_album, rng)
        if config.positives == "album"
        else TrackSampler(len(tracks), rng)
    )
    budget_s = config.minutes * 60 if config.minutes else None

    result = PretrainResult(network=network, device=str(device), precision=str(dtype)[6:])
    bar = progress(total=100, desc="pretrain", unit="%") if progress else None
    shown = 0
    started = clock()

    def spent(step: int) -> float:
        by_steps = step / config.steps if config.steps else 0.0
        by_time = (clock() - started) / budget_s if budget_s else 0.0
        return max(by_steps, by_time)

    try:
        while True:
            fraction = spent(result.steps)
            if fraction >= 1.0:
                reached_steps = config.steps is not None and result.steps >= config.steps
                result.stopped = "steps" if reached_steps else "time"
                break
            lr = learning_rate(fraction, config)
            for group in optimiser.param_groups:
                group["lr"] = lr
            chosen = sampler.take(per_step)
            crops = draw_crops(np.concatenate([chosen, chosen]), lengths, frames, config.views, rng)
            raw = cut_windows(specs, crops, frames)
            # views are made on the CPU (cheap next to the network), then moved
            x = make_views(raw, crops, frames, frontend.top_db, config.views, gen)
            x = x.to(device).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                embedding = network.embed(x)
                z = projection(embedding)
                predicted = distil(embedding) if distil is not None else None
            z = z.float()
            if config.positives == "album":
                labels = torch.from_numpy(np.concatenate([albums[chosen]] * 2)).to(device)
                contrastive = supervised_nt_xent(z, labels, config.temperature)
            else:
                contrastive = nt_xent(z[:per_step], z[per_step:], config.temperature)
            loss = contrastive
            teacher_loss, teacher_views = None, 0
            if predicted is not None:
                start_s, end_s = crop_seconds(
                    crops, frames, frontend.hop_length, frontend.sample_rate, offsets
                )
                targets, valid = view_targets(teacher, crops.track, start_s, end_s, teacher_dim)
                teacher_views = int(valid.sum())
                if valid.any():
                    mask = torch.from_numpy(valid).to(device)
                    teacher_loss = cosine_distance(
                        predicted.float()[mask], torch.from_numpy(targets[valid]).to(device)
                    )
                    loss = loss + config.teacher_weight * teacher_loss
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            result.steps += 1
            result.views += len(x)
            elapsed = clock() - started
            stats = pair_statistics(z[:per_step].detach(), z[per_step:].detach())
            record = {
                "step": result.steps,
                "loss": float(loss.item()),
                "contrastive": float(contrastive.item()),
                "teacher": float(teacher_loss.item()) if teacher_loss is not None else None,
                "teacher_views": teacher_views,
                **stats,
                "lr": lr,
                "elapsed_s": elapsed,
            }
            result.history.append(record)
            if bar is not None:
                now = min(100, int(100 * spent(result.steps)))
                bar.update(now - shown)
                shown = now
                postfix = {"loss": f"{record['loss']:.3f}", "top1": f"{stats['top1']:.2f}"}
                if teacher_loss is not None:
                    postfix["teacher"] = f"{record['teacher']:.3f}"
                postfix["views/s"] = f"{result.views / max(elapsed, 1e-9):.1f}"
                bar.set_postfix(postfix, refresh=False)
    except KeyboardInterrupt:
        result.stopped = "interrupted"
    if bar is not None:
        bar.close()
    result.seconds = clock() - started
    network.cpu().eval()
    return result
