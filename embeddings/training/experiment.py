"""A whole training experiment: cache, split by track, train, evaluate, report, save.

``run_experiment`` is what ``sonic train`` calls. For every fold it trains each
requested network and each handcrafted-feature baseline on the *same* training
tracks and scores them on the *same* held-out tracks at clip level, then (unless
told not to) trains the first architecture once more on every track for the
number of epochs the folds' early stopping chose, and saves that checkpoint.

Everything lands in one run folder: ``metrics.json``, ``comparison.md``,
``confusion_<model>.png``, ``learning_curves_<arch>.png`` and the checkpoint.

``cross_validate=False`` (``sonic train --final-only``) skips the folds and trains
only the final network, for ``final_epochs`` (else ``TrainConfig.max_epochs``):
for a backbone wanted for its embeddings, where the folds would cost five times
the training and measure a task nobody needs (say "which soundtrack is this").
``max_seconds`` (``--max-seconds``) trains on a seeded excerpt of each track.

With ``TrainConfig.init_checkpoint`` (``sonic train --init``) every fold's network
and the final one start from that checkpoint's backbone; its model id is recorded
in ``metrics.json`` and in the saved checkpoint, so a result can be traced back to
the pretraining run it came from.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from embeddings.checkpoint import GenreModel, load_checkpoint, save_checkpoint
from embeddings.frontend import FrontendConfig
from embeddings.training.dataset import Dataset, FeatureCache, Track, discover
from embeddings.training.evaluate import (
    clip_metrics,
    clip_probabilities,
    segment_probabilities,
    summarise,
)
from embeddings.training.handcrafted import fit_predict_baseline
from embeddings.training.splits import (
    Fold,
    fold_from_split,
    inner_validation,
    read_split_file,
    stratified_folds,
)
from embeddings.training.train import TrainConfig, train_network, training_dtype

Progress = Callable[..., object]


@dataclass
class ExperimentOptions:
    """What to train and how to split; the ``TrainConfig`` is shared by every network."""

    archs: list[str] = field(default_factory=lambda: ["resnet18"])
    baselines: list[str] = field(default_factory=list)
    folds: int = 5
    split_file: Path | None = None
    val_fraction: float = 0.125
    aggregation: str = "mean"
    train: TrainConfig = field(default_factory=TrainConfig)
    final_model: bool = True
    final_epochs: int | None = None  # default: median of the folds' best epochs
    checkpoint: Path | None = None  # default: <run>/genre_<arch>.pt
    cross_validate: bool = True  # False: only the final network (--final-only)
    max_seconds: float | None = None  # an excerpt of each track (None: all of it)


def make_folds(
    dataset: Dataset, options: ExperimentOptions, log: Callable[[str], None]
) -> list[Fold]:
    labels = dataset.labels
    if options.split_file:
        parts = read_split_file(options.split_file)
        fold, missing = fold_from_split([t.key for t in dataset.tracks], parts)
        if missing:
            log(f"split entries not in this dataset (skipped): {missing}")
        return [fold]
    return stratified_folds(labels, options.folds, options.train.seed)


def _with_validation(fold: Fold, labels: np.ndarray, options: ExperimentOptions) -> Fold:
    if fold.val is not None and len(fold.val):
        return fold
    fit, val = inner_validation(fold.train, labels, options.val_fraction, options.train.seed)
    out = Fold(train=fit, test=fold.test, val=val)
    out.check_disjoint()
    return out


def _skip_unreadable(
    dataset: Dataset, unreadable: list[tuple[Track, str]], log: Callable[[str], None]
) -> Dataset:
    """Train on what could be read, saying which files were left out and why."""
    for track, reason in unreadable:
        log(f"warning: skipped {track.key}: {reason}")
    kept = dataset.without({track.key for track, _ in unreadable})
    lost = [g for g in dataset.genres if g not in kept.genres]
    if lost:
        log(f"warning: no readable audio left in genre(s) {', '.join(lost)}: not trained")
    log(f"training on {len(kept.tracks)} tracks in {len(kept.genres)} genres: {kept.counts()}")
    return kept


def load_init(options: ExperimentOptions, frontend: FrontendConfig) -> GenreModel | None:
    """The ``--init`` checkpoint, checked against what is about to be trained."""
    path = options.train.init_checkpoint
    if not path:
        return None
    init = load_checkpoint(Path(path))
    others = [a for a in options.archs if a != init.arch]
    if others:
        raise ValueError(
            f"--init {path} holds a {init.arch} network; it cannot initialise "
            f"{', '.join(others)} (train --arch {init.arch} with it)"
        )
    if not frontend.same_shape(init.frontend):
        raise ValueError(
            f"--init {path} was trained on another front end ({init.frontend}); "
            f"this training uses {frontend}"
        )
    return init


def _init_record(init: GenreModel | None, options: ExperimentOptions) -> dict | None:
    if init is None:
        return None
    return {
        "path": str(options.train.init_checkpoint),
        "model_id": init.model_id,
        "kind": init.kind,
        "arch": init.arch,
    }


def _environment() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
    }


def run_experiment(
    dataset_root: Path,
    run_dir: Path,
    cache_dir: Path,
    options: ExperimentOptions,
    progress: Progress | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Cross-validate, write the run folder and return the metrics dictionary."""
    from embeddings.training import report

    started = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if options.train.threads:
        torch.set_num_threads(options.train.threads)
    frontend = FrontendConfig()
    init = load_init(options, frontend)
    init_state = init.network.state_dict() if init else None
    if init:
        log(f"initialising every network's backbone from {init.model_id} ({init.kind})")
    dataset = discover(dataset_root)
    log(f"{len(dataset.tracks)} tracks in {len(dataset.genres)} genres: {dataset.counts()}")

    cache = FeatureCache(cache_dir, frontend)
    wrap = (lambda it: progress(it, desc="features", unit="track")) if progress else None
    feats, unreadable = cache.load_all(
        dataset.tracks, handcrafted=bool(options.baselines), progress=wrap,
        max_seconds=options.max_seconds,
    )  # fmt: skip
    if unreadable:
        dataset = _skip_unreadable(dataset, unreadable, log)
    labels = dataset.labels
    genres = dataset.genres

    folds = []
    if options.cross_validate:
        folds = [_with_validation(f, labels, options) for f in make_folds(dataset, options, log)]
    elif not (options.final_model and options.archs):
        raise ValueError("--final-only trains the final network: it needs --final and an --arch")
    models = [*options.archs, *options.baselines] if folds else []
    per_fold: dict[str, list[dict]] = {m: [] for m in models}
    histories: dict[str, list[list[dict]]] = {a: [] for a in options.archs}
    best_epochs: dict[str, list[int]] = {a: [] for a in options.archs}
    seconds: dict[str, list[float]] = {m: [] for m in models}
    fold_records = []
    for k, fold in enumerate(folds, start=1):
        fold_records.append(
            {
                "fold": k,
                "train": [dataset.tracks[i].key for i in fold.train],
                "val": [dataset.tracks[i].key for i in fold.val] if fold.val is not None else [],
                "test": [dataset.tracks[i].key for i in fold.test],
            }
        )
        y_test = labels[fold.test]
        for arch in options.archs:
            t0 = time.perf_counter()
            config = replace(options.train, arch=arch, seed=options.train.seed + k)
            result = train_network(
                [feats[i].log_power for i in fold.train],
                labels[fold.train],
                len(genres),
                frontend,
                config,
                val_segments=[feats[i].segments for i in fold.val],
                val_labels=labels[fold.val],
                progress=progress,
                desc=f"fold {k}/{len(folds)} {arch}",
                init_state=init_state,
            )
            probs = segment_probabilities(
                result.network,
                [feats[i].segments for i in fold.test],
                dtype=training_dtype(arch, config.precision),
            )
            y_pred = clip_probabilities(probs, options.aggregation).argmax(axis=1)
            metrics = clip_metrics(y_test, y_pred, genres)
            flat = np.concatenate(probs).argmax(axis=1)
            truth = np.concatenate([np.full(len(p), y) for p, y in zip(probs, y_test, strict=True)])
            metrics["segment_accuracy"] = float((flat == truth).mean())
            metrics["best_epoch"] = result.best_epoch
            metrics["epochs_run"] = len(result.history)
            metrics["seconds"] = time.perf_counter() - t0
            per_fold[arch].append(metrics)
            histories[arch].append(result.history_dicts())
            best_epochs[arch].append(result.best_epoch)
            seconds[arch].append(metrics["seconds"])
            log(
                f"fold {k}/{len(folds)} {arch}: clip accuracy {metrics['accuracy']:.3f} "
                f"(segments {metrics['segment_accuracy']:.3f}), best epoch {result.best_epoch}, "
                f"{metrics['seconds']:.0f} s"
            )
        if options.baselines:
            # the baselines tune themselves by inner CV, so they see train + val tracks
            train_idx = (
                np.concatenate([fold.train, fold.val]) if fold.val is not None else fold.train
            )
            x_train = np.stack([feats[i].handcrafted for i in train_idx])
            x_test = np.stack([feats[i].handcrafted for i in fold.test])
            for name in options.baselines:
                t0 = time.perf_counter()
                y_pred = fit_predict_baseline(
                    name, x_train, labels[train_idx], x_test, options.train.seed + k
                )
                metrics = clip_metrics(y_test, y_pred, genres)
                metrics["seconds"] = time.perf_counter() - t0
                per_fold[name].append(metrics)
                seconds[name].append(metrics["seconds"])
                log(f"fold {k}/{len(folds)} {name}: clip accuracy {metrics['accuracy']:.3f}")

    summary = {m: summarise(per_fold[m], genres) for m in models}
    for m in models:
        summary[m]["seconds_per_fold"] = float(np.mean(seconds[m]))
        summary[m]["kind"] = "network" if m in options.archs else "handcrafted-57"
    metrics_out: dict = {
        "dataset": str(Path(dataset_root).resolve()),
        "genres": genres,
        "tracks": len(dataset.tracks),
        "counts": dataset.counts(),
        "unreadable": [{"track": t.key, "reason": reason} for t, reason in unreadable],
        "protocol": {
            "split": str(options.split_file)
            if options.split_file
            else f"stratified {len(folds)}-fold by track"
            if folds
            else "none (--final-only: every track trains the final network)",
            "max_seconds": options.max_seconds,
            "early_stopping": "validation loss on held-out training tracks "
            f"({options.val_fraction:.0%} of each training side, stratified)",
            "evaluation": f"clip level, {options.aggregation} of segment probabilities",
            "seed": options.train.seed,
        },
        "train_config": options.train.to_dict(),
        "init": _init_record(init, options),
        "environment": _environment(),
        "summary": summary,
        "per_fold": per_fold,
        "histories": histories,
        "folds": fold_records,
    }

    for m in models:
        report.confusion_png(
            np.array(summary[m]["confusion"]), genres, run_dir / f"confusion_{m}.png",
            title=f"{m}: pooled over {len(folds)} folds (clip level)",
        )  # fmt: skip
    for arch in options.archs if folds else []:
        report.learning_curves_png(histories[arch], run_dir / f"learning_curves_{arch}.png", arch)
    (run_dir / "comparison.md").write_text(
        report.comparison_table(summary) if folds else "no cross-validation (--final-only)\n"
    )

    if options.final_model and options.archs:
        arch = options.archs[0]
        if folds:
            epochs = options.final_epochs or max(1, int(np.median(best_epochs[arch])))
        else:
            epochs = options.final_epochs or options.train.max_epochs
        log(f"final {arch}: training on all {len(dataset.tracks)} tracks for {epochs} epochs")
        t0 = time.perf_counter()
        config = replace(options.train, arch=arch)
        result = train_network(
            [f.log_power for f in feats], labels, len(genres), frontend, config,
            epochs=epochs, progress=progress, desc=f"final {arch}", init_state=init_state,
        )  # fmt: skip
        path = Path(options.checkpoint) if options.checkpoint else run_dir / f"genre_{arch}.pt"
        s = summary.get(arch, {})
        model_id = save_checkpoint(
            path, result.network, arch, genres, frontend, trained=True,
            info={
                "dataset": Path(dataset_root).name,
                "tracks": len(dataset.tracks),
                "epochs": len(result.history),
                "cv_clip_accuracy_mean": s.get("accuracy_mean"),
                "cv_clip_accuracy_std": s.get("accuracy_std"),
                "cv_folds": len(folds),
                "train_config": config.to_dict(),
                "init": _init_record(init, options),
            },
        )  # fmt: skip
        metrics_out["final_model"] = {
            "arch": arch,
            "path": str(path),
            "model_id": model_id,
            "epochs": len(result.history),
            "epochs_asked": epochs,
            "stopped_by_budget": result.stopped_by_budget,
            "history": result.history_dicts(),
            "seconds": time.perf_counter() - t0,
            "size_bytes": path.stat().st_size,
        }
        log(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB, {model_id})")

    metrics_out["wall_seconds"] = time.perf_counter() - started
    (run_dir / "metrics.json").write_text(json.dumps(metrics_out, indent=2))
    return metrics_out
