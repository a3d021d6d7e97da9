"""One ``sonic pretrain`` run around the step loop: find, decode, pretrain, save, log.

Discovers the audio under the roots, decodes it once into the spectrogram cache
(capped in memory), lines up the teacher's targets when a cache is given, runs
:func:`embeddings.training.pretrain.pretrain_network` and writes the ``backbone``
checkpoint and its loss log (``NAME.log.json`` beside ``NAME.pt``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embeddings.checkpoint import load_checkpoint, save_checkpoint
from embeddings.frontend import FrontendConfig
from embeddings.model import build_model, load_backbone
from embeddings.training.pretrain import PretrainConfig, Progress, pretrain_network
from embeddings.training.teacher import TeacherCache, load_targets
from embeddings.training.track_samplers import album_labels
from embeddings.training.unlabelled import discover_audio, load_corpus


@dataclass
class PretrainOptions:
    """Where the audio, caches and outputs are, beside the ``PretrainConfig``."""

    roots: list[Path]
    out: Path
    cache_dir: Path
    exclude: list[Path] = field(default_factory=list)
    teacher_cache: Path | None = None
    init: Path | None = None
    workers: int = 1
    max_corpus_bytes: int | None = None  # cap on the spectrograms held in memory
    config: PretrainConfig = field(default_factory=PretrainConfig)


def log_path(checkpoint: Path) -> Path:
    """Where the loss log of a checkpoint goes: ``NAME.log.json`` beside ``NAME.pt``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".log.json")


def run_pretraining(
    options: PretrainOptions,
    progress: Progress | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Discover, cache, pretrain, save the backbone checkpoint and its loss log."""
    config = options.config
    frontend = FrontendConfig()
    network = build_model(config.arch, 0)
    init_record = None
    if options.init:
        init = load_checkpoint(options.init)
        if init.arch != config.arch:
            raise ValueError(f"--init {options.init} holds a {init.arch}, not a {config.arch}")
        if not frontend.same_shape(init.frontend):  # another shape: keep the backbone's own
            frontend = init.frontend
        load_backbone(network, init.network.state_dict())
        init_record = {"path": str(options.init), "model_id": init.model_id, "kind": init.kind}
        log(f"starting from the backbone of {init.model_id} ({init.kind})")

    files, excluded = discover_audio(options.roots, options.exclude)
    log(f"{len(files)} audio files" + (f" ({excluded} excluded)" if excluded else ""))
    if not files:
        raise ValueError("no audio files found under " + ", ".join(map(str, options.roots)))
    cache = (
        TeacherCache(options.teacher_cache, config.teacher_layer) if options.teacher_cache else None
    )
    within: dict[Path, float] = {}
    if cache is not None:
        # a teacher may have analysed only the start of long files: cut those
        # files' excerpts inside what it covered, so that their views get targets
        within = {f: c for f in files if (c := cache.coverage(f)) is not None}
    bars = (
        (lambda it, total: progress(it, total=total, desc="decode", unit="file"))
        if progress
        else None
    )
    corpus = load_corpus(
        files, options.cache_dir, frontend, config.max_seconds, config.seed, options.workers,
        bars, within, options.max_corpus_bytes,
    )  # fmt: skip
    for path, reason in corpus.failed[:10]:
        log(f"  skipped {path}: {reason}")
    if len(corpus.failed) > 10:
        log(f"  ... and {len(corpus.failed) - 10} more skipped")
    if corpus.left_out:
        log(
            f"memory cap reached ({options.max_corpus_bytes / 1e6:,.0f} MB of spectrograms): "
            f"{corpus.left_out} files left out, those kept spread evenly across folders; "
            "raise --memory-gb or lower --max-seconds to learn from more of them"
        )
    folders = len(np.unique(album_labels(corpus.tracks)))
    log(
        f"{len(corpus.tracks)} tracks in {folders} folders, "
        f"{corpus.seconds / 3600:.1f} h of audio, "
        f"{corpus.nbytes / 1e6:.0f} MB of cached spectrograms in memory"
    )

    teacher, teacher_dim, teacher_record = None, 0, None
    if cache is not None:
        hop = frontend.hop_length / frontend.sample_rate
        spans = [(t.offset_s, t.offset_s + t.frames * hop) for t in corpus.tracks]
        teacher, teacher_dim = load_targets(cache, [t.path for t in corpus.tracks], spans)
        covered = sum(t is not None for t in teacher)
        log(
            f"teacher {config.teacher_layer} ({teacher_dim}-d) for {covered} of "
            f"{len(corpus.tracks)} tracks; the others train on the contrastive loss only"
        )
        teacher_record = {
            "cache": str(options.teacher_cache),
            "layer": config.teacher_layer,
            "dim": teacher_dim,
            "weight": config.teacher_weight,
            "tracks_covered": covered,
        }

    result = pretrain_network(
        network, corpus.tracks, frontend, config, teacher, teacher_dim, progress
    )
    log(
        f"{result.steps} steps, {result.views} views in {result.seconds / 60:.1f} min "
        f"({result.views_per_second:.1f} views/s on {result.device}, {result.precision}), "
        f"stopped by {result.stopped}"
    )
    last = result.history[-20:]
    summary = {
        "steps": result.steps,
        "views": result.views,
        "seconds": result.seconds,
        "views_per_second": result.views_per_second,
        "stopped": result.stopped,
        "device": result.device,
        "precision": result.precision,
        "final_loss": float(np.mean([h["loss"] for h in last])) if last else None,
        "final_top1": float(np.mean([h["top1"] for h in last])) if last else None,
    }
    info = {
        "method": (
            "SimCLR/COLA-style contrastive pretraining (NT-Xent), embedding = embed()"
            if config.positives == "track"
            else "contrastive pretraining with album positives (multi-positive NT-Xent), "
            "embedding = embed()"
        ),
        "albums": folders,
        "tracks": len(corpus.tracks),
        "left_out_by_memory_cap": corpus.left_out,
        "audio_hours": corpus.seconds / 3600,
        "roots": [str(Path(r).resolve()) for r in options.roots],
        "excluded": [str(Path(e).resolve()) for e in options.exclude],
        "pretrain_config": config.to_dict(),
        "teacher": teacher_record,
        "init": init_record,
        **summary,
    }
    model_id = save_checkpoint(
        options.out, network, config.arch, [], frontend, trained=True, info=info, kind="backbone"
    )
    record = {
        "checkpoint": str(options.out),
        "model_id": model_id,
        **info,
        "failed": [{"path": str(p), "reason": r} for p, r in corpus.failed],
        "history": result.history,
    }
    log_path(options.out).write_text(json.dumps(record, indent=1))
    log(f"saved {options.out} ({model_id}); loss log {log_path(options.out)}")
    return {"checkpoint": str(options.out), "model_id": model_id, "log": str(log_path(options.out)),
            "tracks": len(corpus.tracks), "failed": len(corpus.failed),
            "left_out_by_memory_cap": corpus.left_out, "teacher": teacher_record,
            **summary}  # fmt: skip
