"""``sonic train`` and ``sonic dataset-report``: thin faces over ``embeddings``.

Argument parsing, default paths (under the data directory) and progress bars live
here; splitting, training, evaluation and plotting live in ``embeddings``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from catalog.paths import default_data_dir
from ui.options import DataDir, JsonFlag, checkpoint_argument, command

COMPARE_ARCHS = ["resnet18", "vgg", "crnn", "transformer"]
COMPARE_BASELINES = ["svm", "logreg", "mlp"]


class _Bars:
    """A tqdm factory on stderr that also prints epoch summaries above the bars."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, iterable=None, **kwargs):
        from tqdm import tqdm

        return tqdm(
            iterable, disable=not self.enabled, file=sys.stderr, dynamic_ncols=True, **kwargs
        )

    def write(self, message: str) -> None:
        if self.enabled:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stderr)


def _split_names(value: str, known: list[str], what: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        typer.secho(
            f"error: unknown {what} {', '.join(unknown)}; choose from {', '.join(known)}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    return names


def train(
    dataset: Annotated[
        Path, typer.Argument(help="Folder with one sub-folder of audio files per genre.")
    ],
    arch: Annotated[
        str,
        typer.Option(
            help="Network(s) to train, comma-separated: resnet18, vgg, crnn, transformer. "
            "The first is also trained on all tracks and saved."
        ),
    ] = "resnet18",
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Evaluate every architecture and the handcrafted-feature baselines "
            "(SVM, logistic regression, MLP) on the same folds, and write the table.",
        ),
    ] = False,
    baselines: Annotated[
        str, typer.Option(help="Handcrafted-feature baselines to add: svm,logreg,mlp.")
    ] = "",
    folds: Annotated[int, typer.Option(help="Stratified k-fold by track.", min=2)] = 5,
    split: Annotated[
        Path | None,
        typer.Option(
            help="A fixed split instead of k-fold: JSON {train,val,test} lists of "
            "genre/file, or a folder of train*.txt / valid*.txt / test*.txt "
            "(the fault-filtered GTZAN split)."
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Most epochs per fold (early stopping).", min=1)] = 30,
    crops: Annotated[int, typer.Option(help="Random 3-s crops per track per epoch.", min=1)] = 8,
    batch_size: Annotated[int, typer.Option(help="Segments per training step.", min=2)] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate (one-cycle).")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.05,
    mixup: Annotated[float, typer.Option(help="Mixup alpha; 0 turns it off.")] = 0.3,
    patience: Annotated[
        int, typer.Option(help="Epochs without val-loss gain before stopping.")
    ] = 8,
    seed: Annotated[int, typer.Option(help="Seed of splits, weights and augmentation.")] = 0,
    precision: Annotated[str, typer.Option(help="auto, bf16 or fp32.")] = "auto",
    threads: Annotated[int, typer.Option(help="CPU threads for torch (0: torch's default).")] = 2,
    final: Annotated[
        bool, typer.Option(help="Train the first --arch on all tracks and save the checkpoint.")
    ] = True,
    final_epochs: Annotated[
        int | None, typer.Option(help="Epochs for the final model (default: median best epoch).")
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Where to save the final checkpoint (default: in the run folder)."),
    ] = None,
    final_only: Annotated[
        bool,
        typer.Option(
            "--final-only",
            help="Skip cross-validation: only train the first --arch on every track, for "
            "--final-epochs (default --epochs), and save it (a backbone for its embeddings).",
        ),
    ] = False,
    minutes: Annotated[
        float | None,
        typer.Option(
            help="Wall-clock budget per network: after the first epoch the epochs (and the "
            "learning-rate schedule) are cut to what fits; the epochs run are recorded.",
            min=0.1,
        ),
    ] = None,
    max_seconds: Annotated[
        float | None,
        typer.Option(
            help="Train on a seeded excerpt of this many seconds of each track (long tracks: "
            "a fraction of the decoding and memory).",
            min=3.0,
        ),
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option(
            "--init",
            help="Start every network from this checkpoint's backbone (all weights but the "
            "genre head), e.g. one made by `sonic pretrain`, or 'shipped' for the "
            "packaged model; the head starts fresh.",
        ),
    ] = None,
    backbone_lr: Annotated[
        float,
        typer.Option(
            help="The backbone's peak learning rate as a fraction of --lr (the head gets "
            "--lr): below 1 it keeps more of an --init backbone; 0 freezes its weights.",
            min=0.0,
        ),
    ] = 1.0,
    run_dir: Annotated[
        Path | None,
        typer.Option(help="Run folder (default: <data dir>/runs/<time>-<dataset>)."),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Feature cache (default: <data dir>/cache/features).")
    ] = None,
    data_dir: DataDir = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Train and cross-validate genre models on DATASET (folder per genre, GTZAN included).

    DATASET may be any folder of labelled sub-folders: --final-only with --minutes and
    --max-seconds trains a backbone on labels that are not genres (one folder per
    soundtrack, say) within a time budget.

    Splits by track (stratified k-fold, or --split), trains on random 3-s crops with
    SpecAugment and mixup, early-stops on held-out training tracks, and scores each
    held-out track once (clip level). Writes metrics.json, confusion matrices,
    learning curves and the checkpoint into the run folder. --init fine-tunes a
    pretrained backbone (`sonic pretrain`) instead of starting from random weights.
    """
    from embeddings.model import ARCHITECTURES
    from embeddings.training.experiment import ExperimentOptions, run_experiment
    from embeddings.training.handcrafted import BASELINES
    from embeddings.training.train import TrainConfig

    if not dataset.is_dir():
        typer.secho(f"error: no such folder: {dataset}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    init = checkpoint_argument(init) if init is not None else None
    if init is not None and not init.is_file():
        typer.secho(f"error: no such checkpoint: {init}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    archs = _split_names(arch, list(ARCHITECTURES), "architecture")
    base = _split_names(baselines, list(BASELINES), "baseline")
    if compare:
        archs += [a for a in COMPARE_ARCHS if a not in archs]
        base += [b for b in COMPARE_BASELINES if b not in base]
    root = data_dir or default_data_dir()
    run_dir = run_dir or root / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{dataset.name}"
    options = ExperimentOptions(
        archs=archs,
        baselines=base,
        folds=folds,
        split_file=split,
        train=TrainConfig(
            max_epochs=epochs,
            crops_per_track=crops,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            mixup_alpha=mixup,
            patience=patience,
            seed=seed,
            precision=precision,
            threads=threads or None,
            init_checkpoint=str(init.resolve()) if init else None,
            backbone_lr=backbone_lr,
            max_minutes=minutes,
        ),  # fmt: skip
        final_model=final,
        final_epochs=final_epochs,
        checkpoint=checkpoint,
        cross_validate=not final_only,
        max_seconds=max_seconds,
    )
    bars = _Bars(progress and not as_json)

    def log(message: str) -> None:
        if not as_json:
            bars.write(message) if progress else typer.echo(message, err=True)

    try:
        metrics = run_experiment(
            dataset, run_dir, cache_dir or root / "cache" / "features", options, bars, log
        )
    except (ValueError, FileNotFoundError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    result = {
        "run_dir": str(run_dir),
        "summary": {
            m: {
                k: s[k]
                for k in ("accuracy_mean", "accuracy_std", "macro_f1_mean", "seconds_per_fold")
            }
            for m, s in metrics["summary"].items()
        },  # fmt: skip
        "final_model": metrics.get("final_model"),
        "wall_seconds": metrics["wall_seconds"],
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo((run_dir / "comparison.md").read_text())
    if metrics.get("final_model"):
        typer.echo(f"checkpoint: {metrics['final_model']['path']}")
    typer.echo(f"run folder: {run_dir} ({metrics['wall_seconds'] / 60:.1f} min)")


def dataset_report(
    dataset: Annotated[Path, typer.Argument(help="Folder with one sub-folder per genre.")],
    output: Annotated[
        Path | None, typer.Option(help="Output folder (default: <dataset name>-report).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="md or html.")] = "md",
    examples: Annotated[int, typer.Option(help="Example spectrograms per genre.", min=1)] = 1,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Exploratory report on DATASET: genre counts, durations, sample rates, spectrograms."""
    from embeddings.training.report import dataset_report as build

    if fmt not in ("md", "html"):
        typer.secho("error: --format must be md or html", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if not dataset.is_dir():
        typer.secho(f"error: no such folder: {dataset}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    target = output or Path(f"{dataset.resolve().name}-report")
    bars = _Bars(progress and not as_json)
    try:
        data = build(
            dataset, target, fmt, examples, lambda it: bars(it, desc="headers", unit="file")
        )
    except (ValueError, FileNotFoundError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(
            f"{data['tracks']} tracks, {len(data['genres'])} genres: "
            + ", ".join(f"{g} {c}" for g, c in data["genres"].items())
        )
        typer.echo(f"report: {data['report']}")


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``dataset-report`` to the ``sonic`` app."""
    command(app, "train")(train)
    command(app, "dataset-report")(dataset_report)
