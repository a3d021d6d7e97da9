"""The ``sonic`` command line: the app, ``sonic ingest``, and the commands of the other modules.

A thin face over the ingest and catalog layers. Each group of commands lives in
its own module (browse_cli, explain_cli, genres_cli, train_cli, pretrain_cli,
similarity_cli, stems_cli, serve_cli, user_cli), registered on the one ``app`` at
the end of this file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from catalog.paths import displayable
from embeddings.inference_paths import PRECISIONS
from embeddings.windows import DEFAULT_ANALYSIS_SECONDS
from ui.options import DatabaseUrl, DataDir, JsonFlag, checkpoint_argument, command, load_model
from ui.options import emit as _emit
from ui.options import fail as _fail
from ui.options import open_catalog as _open_catalog

app = typer.Typer(
    help="Sonic Catalog: index a music library, find sound-alike tracks, browse by genre.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _TqdmProgress:
    """Files done, audio hours analysed, rate and ETA on one line (stderr)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.audio_seconds = 0.0

    def start(self, total_files: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=total_files, unit="file", desc="ingest", disable=not self.enabled,
            dynamic_ncols=True, file=sys.stderr,
        )  # fmt: skip

    def advance(self, audio_seconds: float) -> None:
        self.audio_seconds += audio_seconds
        if self.bar is None:
            return
        elapsed = max(1e-9, self.bar.format_dict["elapsed"])
        self.bar.set_postfix_str(
            f"{self.audio_seconds / 3600:.2f} h audio, "
            f"{self.audio_seconds / 60 / (elapsed / 60):.0f} audio-min/min",
            refresh=False,
        )
        self.bar.update(1)

    def note(self, message: str) -> None:
        if self.bar is not None and self.enabled:
            self.bar.write(displayable(message), file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _model_for_ingest(catalog, model_path: Path | None):
    """The genre model for an ingest: a :class:`LazyModel` when the catalog knows it.

    An unchanged checkpoint the catalog has seen before is not loaded up front, so a
    re-run with nothing to analyse never waits for torch. A checkpoint seen for the
    first time is loaded now and remembered.
    """
    from embeddings.model_handle import DEFAULT_CHECKPOINT, LazyModel, ModelIdentity

    path = checkpoint_argument(model_path) if model_path else DEFAULT_CHECKPOINT
    known = catalog.remembered_checkpoint(path) if path.is_file() else None
    if known is not None:
        return LazyModel(
            ModelIdentity.from_dict(known), lambda: load_model(model_path), checkpoint=path
        )
    genre_model = load_model(model_path)
    if path.is_file():
        catalog.remember_checkpoint(path, ModelIdentity.of(genre_model).to_dict())
    return genre_model


def _lower_priority(nice: int) -> None:
    """Run this process (and the workers it starts) at ``nice``, never above where it is.

    An ingest keeps every core busy for hours; at the default priority it starves a
    service reading the same catalog (p99 of 4 s at 50 clients on 2 cores). A batch
    job should yield to interactive work, so it does by default.
    """
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if nice > current:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    except (AttributeError, OSError):  # not POSIX, or not allowed: run as we are
        pass


def _analysis_seconds(value: str) -> float | None:
    """``--analysis``: 'full' (None) or a positive number of seconds."""
    if value.strip().lower() == "full":
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        _fail(f"--analysis must be 'full' or a positive number of seconds, not {value!r}")
    return seconds


def _print_ingest_summary(data: dict) -> None:
    typer.echo(
        f"indexed {data['analysed']}, unchanged {data['skipped']}, "
        f"moved/touched {data['reused']}, failed {len(data['failed'])}, "
        f"missing {data['missing']} "
        f"({data['audio_hours']:.2f} h of audio in {data['wall_seconds']:.1f} s)"
    )
    if data["inference"]:
        typer.echo(f"inference: {data['inference']}")
    if data.get("analysis") and data["analysed"]:
        typer.echo(f"analysis: {data['analysis']}")
    if data.get("yielded_seconds"):
        typer.echo(
            f"stood aside {data['yielded_seconds']:.0f} s for `sonic serve` answering requests"
        )
    for node, files in sorted(data["nodes"].items()):
        typer.echo(f"  on Ray node {node}: {files} files")
    if len(data.get("ray_actors") or {}) > 1:  # a mixed run: how the two pools shared it
        shares = sorted(data["ray_actors"].items())
        typer.echo("  " + ", ".join(f"{n} files by {kind.upper()} actors" for kind, n in shares))
    if data["previous_model_id"]:
        typer.echo(
            f"the model changed from {data['previous_model_id']} to {data['model_id']}: "
            "tracks analysed with the old one were analysed again"
        )
    if data["other_model_tracks"]:
        typer.echo(
            f"{data['other_model_tracks']} tracks elsewhere in the catalog were analysed with "
            "another model and stay out of search until their folders are ingested again"
        )
    if data["claimed_elsewhere"]:
        typer.echo(
            f"{data['claimed_elsewhere']} files were being analysed by another ingest on this "
            "catalog and were left to it"
        )
    if data.get("library_genres"):
        typer.echo(f"library genre model applied to {data['library_genres']} tracks")
    if data["index_repaired"]:
        typer.echo("the FAISS index disagreed with the database and was rebuilt from it")
    shown = data["failed"][:20]
    for item in shown:
        typer.echo(f"  failed: {item['path']}: {item['reason']}")
    for item in data["unreadable_folders"]:
        typer.echo(
            f"  folder not read: {item['path']}: {item['reason']} (its tracks kept as they were)"
        )
    if len(data["failed"]) > len(shown):
        typer.echo(
            f"  ... and {len(data['failed']) - len(shown)} more "
            "(`sonic tracks --status failed` lists them all)"
        )


def _ingest_on_ray(
    paths, catalog, genre_model, options, bar, held, address: str, gpus: int, cpu_actors: bool
):
    from ingest.distributed import DistributedIngestError, RayOptions, ingest_on_ray

    ray_options = RayOptions(address, gpus, cpu_actors=cpu_actors)
    try:
        return ingest_on_ray(paths, catalog, genre_model, options, bar, held, ray_options)
    except DistributedIngestError as exc:
        _fail(f"{exc}; finished tracks are saved: run the same command to continue")


@command(app, "ingest")
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Folders or files to index.")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="A genre-model checkpoint (default: the shipped one).")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Decode worker processes (default: one per core).", min=1)
    ] = os.cpu_count() or 1,
    inference_threads: Annotated[
        int,
        typer.Option(help="Network calls run side by side, one core each.", min=1),
    ] = os.cpu_count() or 1,
    batch_size: Annotated[
        int, typer.Option(help="Most segments per network call; peak memory grows with it.", min=1)
    ] = 32,
    aggregation: Annotated[
        str,
        typer.Option(help="How segment probabilities become a track's: mean, median, max, vote."),
    ] = "mean",
    device: Annotated[
        str, typer.Option(help="auto (GPU when present), cpu, cuda, cuda:1, ...")
    ] = "auto",
    precision: Annotated[
        Literal[PRECISIONS],
        typer.Option(
            help="Inference path. auto: on a CPU PyTorch fp32, the fastest path measured to agree "
            "with fp32 (bench/inference.py); on a GPU bf16 or fp16. bf16 (about 2x where native) "
            "and int8 (the shipped calibrated model in ONNX Runtime, about 2x) keep every genre "
            "but reorder some near-tied sound-alike neighbours, so auto does not pick them; "
            "onnx-fp32 runs ONNX Runtime at fp32."
        ),
    ] = "auto",
    heatmaps: Annotated[
        bool, typer.Option(help="Draw a Grad-CAM heatmap and band focus for each track.")
    ] = True,
    analysis: Annotated[
        str,
        typer.Option(
            help="How much of each track to analyse: SECONDS (a budget: evenly spread "
            "windows covering at most that much, and only those parts decoded; shorter "
            "tracks whole) or 'full' (every segment). The default was chosen by "
            "bench/budget.py (docs/benchmarks.md)."
        ),
    ] = f"{DEFAULT_ANALYSIS_SECONDS:g}",
    nice: Annotated[
        int,
        typer.Option(
            help="CPU priority of the ingest, 0-19: higher leaves more of the CPU to other "
            "programs, such as `sonic serve` answering while the library is analysed.",
            min=0,
            max=19,
        ),
    ] = 10,
    yield_to_service: Annotated[
        bool,
        typer.Option(
            help="While `sonic serve` on this data directory is answering requests, run one "
            "network call at a time and rest between calls, so reads stay fast (the ingest "
            "takes longer while the service is busy).",
        ),
    ] = True,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Analyse on a Ray cluster (host:port of its head, or auto); plan and catalog "
            "stay here. Every node must read PATHS at the same paths (a shared mount) and "
            "write to the same data directory.",
        ),
    ] = None,
    ray_gpus: Annotated[
        int,
        typer.Option(
            help="With --ray: one GPU actor per GPU, on this many GPUs, and CPU actors on the "
            "CPUs the GPU actors leave free (see --no-ray-cpu-actors).",
            min=0,
        ),
    ] = 0,
    ray_cpu_actors: Annotated[
        bool,
        typer.Option(
            help="With --ray-gpus: also run a CPU actor on each CPU the GPU actors do not hold; "
            "--no-ray-cpu-actors runs the GPU actors only.",
        ),
    ] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Analyse every audio file under PATHS and add it to the catalog.

    Re-runs skip unchanged files, re-analyse changed ones, and mark vanished ones missing.
    """
    from catalog.genre_names import GenreMappingError
    from ingest.lock import CatalogBusyError, ingest_lock

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        _fail(f"no such file or folder: {', '.join(missing)}")
    budget = _analysis_seconds(analysis)
    if ray_gpus and ray is None:
        _fail("--ray-gpus needs --ray ADDRESS (or --ray auto)")
    with _open_catalog(data_dir, database_url) as catalog:
        try:
            # the lock first: a busy catalog is reported at once, before torch loads
            with ingest_lock(catalog) as held:
                _lower_priority(nice)  # decode workers inherit it
                from embeddings.aggregation import AGGREGATIONS
                from ingest.pipeline import IngestOptions
                from ingest.pipeline import ingest as run_ingest

                if aggregation not in AGGREGATIONS:
                    _fail(f"--aggregation must be one of {', '.join(AGGREGATIONS)}")
                options = IngestOptions(
                    workers=workers, inference_threads=inference_threads,
                    batch_size=batch_size, aggregation=aggregation, device=device,
                    precision=precision, heatmaps=heatmaps,
                    analysis_seconds=budget, yield_to_service=yield_to_service,
                )  # fmt: skip
                genre_model = _model_for_ingest(catalog, checkpoint)
                bar = _TqdmProgress(progress and not as_json)
                if ray is None:
                    summary = run_ingest(paths, catalog, genre_model, options, bar, held)
                else:
                    summary = _ingest_on_ray(
                        paths, catalog, genre_model, options, bar, held, ray, ray_gpus,
                        ray_cpu_actors,
                    )  # fmt: skip
        except (CatalogBusyError, GenreMappingError) as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted: finished tracks are saved; run the same command to continue", 130)
    data = summary.to_dict()
    _emit(data, as_json, _print_ingest_summary)
    if summary.files_seen == 0:
        _fail(f"no audio files found under {', '.join(map(str, paths))}")
    if summary.processed == 0 and summary.failed:
        _fail("no file could be processed")


from ui import (  # noqa: E402
    browse_cli,
    explain_cli,
    genres_cli,
    pretrain_cli,
    serve_cli,
    similarity_cli,
    stems_cli,
    train_cli,
    user_cli,
)

browse_cli.register(app)
explain_cli.register(app)
train_cli.register(app)
genres_cli.register(app)
pretrain_cli.register(app)
similarity_cli.register(app)
stems_cli.register(app)
serve_cli.register(app)
user_cli.register(app)

if __name__ == "__main__":  # `python -m ui.cli` runs the checkout's code
    app()
