"""``sonic pretrain``: a thin face over ``embeddings.training.pretrain_run``.

Argument parsing, default paths (under the data directory) and the progress bars
live here; finding and caching the audio, the views, the losses and the
checkpoint live in ``embeddings``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from catalog.paths import default_data_dir
from ui.options import DataDir, JsonFlag, checkpoint_argument, command
from ui.train_cli import _Bars


def pretrain(
    audio_dirs: Annotated[
        list[Path],
        typer.Argument(
            metavar="AUDIO_DIR",
            help="Folders (searched recursively) or files of unlabelled audio.",
        ),
    ],
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Checkpoint to write (default: <data dir>/models/pretrained-<time>.pt)."),
    ] = None,
    exclude: Annotated[
        list[Path] | None,
        typer.Option(
            "--exclude",
            help="Skip audio under this folder (repeatable): keep held-out evaluation "
            "soundtracks out of pretraining.",
        ),
    ] = None,
    teacher_cache: Annotated[
        Path | None,
        typer.Option(
            help="Folder with a cached teacher's outputs (index.json + one .npz per track) "
            "to distil from, as written by python tools/teacher_handcrafted.py, "
            "tools/teacher_musicnn.py or tools/teacher_merge.py; see tools/README.md."
        ),
    ] = None,
    teacher_layer: Annotated[
        str, typer.Option(help="Teacher array to predict, e.g. penultimate, taggram, mean_pool.")
    ] = "penultimate",
    teacher_weight: Annotated[
        float, typer.Option(help="Weight of the distillation loss beside the contrastive one.")
    ] = 1.0,
    minutes: Annotated[
        float,
        typer.Option(help="Time budget; the learning-rate schedule ends with it (0: no limit)."),
    ] = 30.0,
    steps: Annotated[
        int, typer.Option(help="Step budget (0: no limit); the first budget spent ends the run.")
    ] = 0,
    batch_size: Annotated[
        int, typer.Option(help="Views per step: two random crops of batch-size/2 tracks.", min=4)
    ] = 64,
    max_seconds: Annotated[
        float,
        typer.Option(help="Seconds of each track kept (from a seeded offset); 0 keeps it all."),
    ] = 90.0,
    init: Annotated[
        Path | None,
        typer.Option(
            "--init",
            help="Start from this checkpoint's backbone instead of random weights: "
            "'shipped' (the packaged genre model, the usual start for adapting it to "
            "your library) or an earlier pretraining run.",
        ),
    ] = None,
    views: Annotated[
        str,
        typer.Option(
            help="Augmentation of the two views: 'crops' (two positions in a track, plus "
            "masks; keeps the mix and EQ that make tracks sound alike) or 'full' (also "
            "EQ, noise, pitch and tempo changes)."
        ),
    ] = "crops",
    positives: Annotated[
        str,
        typer.Option(
            help="What a crop must find: 'track' (the other crop of its own track) or "
            "'album' (also crops of other tracks in its folder; each step draws "
            "--tracks-per-album tracks from each of several folders)."
        ),
    ] = "track",
    tracks_per_album: Annotated[
        int, typer.Option(help="With --positives album: tracks drawn per album.", min=1)
    ] = 4,
    arch: Annotated[str, typer.Option(help="Network to pretrain.")] = "resnet18",
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 1e-3,
    temperature: Annotated[float, typer.Option(help="NT-Xent temperature.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of weights, sampling and augmentation.")] = 0,
    precision: Annotated[str, typer.Option(help="auto, bf16 or fp32.")] = "auto",
    device: Annotated[
        str, typer.Option(help="auto (GPU when present), cpu, cuda, cuda:1, ...")
    ] = "auto",
    threads: Annotated[int, typer.Option(help="CPU threads for torch (0: torch's default).")] = 2,
    workers: Annotated[
        int, typer.Option(help="Processes decoding audio into the cache.", min=1)
    ] = 1,
    memory_gb: Annotated[
        float,
        typer.Option(
            help="Most memory the decoded excerpts may take (about 1 MB per track at 90 s); "
            "a larger library is sampled evenly across its folders (0: no cap).",
            min=0.0,
        ),
    ] = 4.0,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Spectrogram cache (default: <data dir>/cache/features)."),
    ] = None,
    data_dir: DataDir = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Pretrain the embedding network on unlabelled audio (contrastive, SimCLR/COLA-style).

    Two random 3-s crops of each track (masked, and with --views full also changed
    in EQ, noise, pitch and tempo) must recognise each other among the crops of
    other tracks; with --positives album, also the crops of other tracks in the
    same folder. Optionally distils a cached teacher (--teacher-cache, written by
    the commands in tools/README.md). Writes a backbone checkpoint
    and its loss log (NAME.log.json); fine-tune it into a genre model with
    `sonic train DATASET --init CHECKPOINT`.
    """
    from embeddings.model import ARCHITECTURES
    from embeddings.training.pretrain import POSITIVES, PretrainConfig
    from embeddings.training.pretrain_run import PretrainOptions, run_pretraining
    from embeddings.training.view_augment import VIEW_PRESETS

    def fail(message: str, code: int = 1) -> None:
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code)

    if arch not in ARCHITECTURES:
        fail(f"unknown architecture {arch}; choose from {', '.join(ARCHITECTURES)}", 2)
    if views not in VIEW_PRESETS:
        fail(f"unknown --views {views!r}; choose from {', '.join(VIEW_PRESETS)}", 2)
    if positives not in POSITIVES:
        fail(f"unknown --positives {positives!r}; choose {' or '.join(POSITIVES)}", 2)
    if batch_size % 2:
        fail("--batch-size counts views, two per track: give an even number", 2)
    if not minutes and not steps:
        fail("give a budget: --minutes, --steps or both", 2)
    missing = [str(p) for p in audio_dirs if not p.exists()]
    if missing:
        fail(f"no such file or folder: {', '.join(missing)}")
    init = checkpoint_argument(init) if init is not None else None
    for path, what in ((teacher_cache, "teacher cache"), (init, "checkpoint")):
        if path is not None and not path.exists():
            fail(f"no such {what}: {path}")
    root = data_dir or default_data_dir()
    target = checkpoint or root / "models" / f"pretrained-{time.strftime('%Y%m%d-%H%M%S')}.pt"
    options = PretrainOptions(
        roots=list(audio_dirs),
        out=target,
        cache_dir=cache_dir or root / "cache" / "features",
        exclude=list(exclude or []),
        teacher_cache=teacher_cache,
        init=init,
        workers=workers,
        max_corpus_bytes=int(memory_gb * 1e9) or None,
        config=PretrainConfig(
            arch=arch,
            batch_size=batch_size,
            steps=steps or None,
            minutes=minutes or None,
            lr=lr,
            temperature=temperature,
            teacher_layer=teacher_layer,
            teacher_weight=teacher_weight,
            max_seconds=max_seconds or None,
            seed=seed,
            precision=precision,
            threads=threads or None,
            device=None if device == "auto" else device,
            views=VIEW_PRESETS[views],
            positives=positives,
            tracks_per_album=tracks_per_album,
        ),
    )
    bars = _Bars(progress and not as_json)

    def log(message: str) -> None:
        if not as_json:
            bars.write(message) if progress else typer.echo(message, err=True)

    try:
        summary = run_pretraining(options, bars, log)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    loss = f"{summary['final_loss']:.3f}" if summary["final_loss"] is not None else "-"
    typer.echo(
        f"checkpoint: {summary['checkpoint']} ({summary['model_id']}), "
        f"{summary['steps']} steps, {summary['views_per_second']:.1f} views/s, "
        f"final loss {loss} (stopped by {summary['stopped']})"
    )
    typer.echo(f"fine-tune it: sonic train DATASET --init {summary['checkpoint']}")


def register(app: typer.Typer) -> None:
    """Add ``pretrain`` to the ``sonic`` app."""
    command(app, "pretrain")(pretrain)
