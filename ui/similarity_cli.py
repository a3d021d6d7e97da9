"""``sonic evaluate-similarity``: a thin face over ``embeddings.training.similarity_eval``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ui.options import JsonFlag, command
from ui.train_cli import _Bars


def _seeds(value: str) -> list[int]:
    if value.strip().lower() in ("", "none"):
        return []
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        typer.secho(f"error: --random-seeds takes integers: {value}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def evaluate_similarity(
    directory: Annotated[
        Path,
        typer.Argument(metavar="DIR", help="Folder with one sub-folder of audio files per album."),
    ],
    checkpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--checkpoint",
            help="Checkpoint to score (repeatable): genre model or pretrained backbone; "
            "'shipped' is the shipped model, the default when none is given.",
        ),
    ] = None,
    random_seeds: Annotated[
        str,
        typer.Option(
            help="Seeds of randomly initialised ResNet18s, comma-separated, averaged "
            "('none': skip them)."
        ),
    ] = "0",
    handcrafted: Annotated[
        bool, typer.Option(help="Score the MFCC + spectral-statistics baseline.")
    ] = True,
    teacher_cache: Annotated[
        Path | None,
        typer.Option(help="Also score a cached teacher's embedding (mean over its windows)."),
    ] = None,
    teacher_layer: Annotated[str, typer.Option(help="Teacher array to score.")] = "penultimate",
    max_seconds: Annotated[
        float, typer.Option(help="Use only the first S seconds of each track (0: all).", min=0)
    ] = 0.0,
    k: Annotated[int, typer.Option("-k", help="Neighbours per track.", min=1)] = 5,
    batch_size: Annotated[int, typer.Option(help="Segments per network call.", min=1)] = 64,
    device: Annotated[str, typer.Option(help="auto (GPU when present), cpu, cuda...")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32 or bf16.")] = "auto",
    threads: Annotated[int, typer.Option(help="CPU threads for torch (0: torch's default).")] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Same-album precision@k of embeddings for DIRECTORY (one sub-folder per album).

    Scores every --checkpoint, randomly initialised ResNet18s, a handcrafted baseline
    and optionally a cached teacher in one run, on the same tracks decoded once.
    """
    import torch

    from embeddings.training.similarity_eval import evaluate_similarity as run
    from embeddings.training.similarity_eval import format_table

    if not directory.is_dir():
        typer.secho(f"error: no such folder: {directory}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    paths: list[Path | None] = []
    for entry in checkpoint or ["shipped"]:
        if entry == "shipped":
            paths.append(None)
        elif not Path(entry).is_file():
            typer.secho(f"error: no such checkpoint: {entry}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
        else:
            paths.append(Path(entry))
    if threads:
        torch.set_num_threads(threads)
    bars = _Bars(progress and not as_json)

    def log(message: str) -> None:
        bars.write(message) if progress and not as_json else typer.echo(message, err=True)

    try:
        result = run(
            directory, paths, _seeds(random_seeds), teacher_cache, teacher_layer, handcrafted,
            max_seconds or None, k, batch_size, None if device == "auto" else device, precision,
            bars, log,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result, indent=2) if as_json else format_table(result))


def register(app: typer.Typer) -> None:
    """Add ``evaluate-similarity`` to the ``sonic`` app."""
    command(app, "evaluate-similarity")(evaluate_similarity)
