"""The ``sonic`` command line: a thin face over the ingest and catalog layers."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Literal

import typer

from catalog.paths import displayable
from embeddings.inference_paths import PRECISIONS
from ui.options import DataDir, JsonFlag, checkpoint_argument
from ui.options import emit as _emit
from ui.options import fail as _fail
from ui.options import open_catalog as _open_catalog
from ui.options import resolve as _resolve

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


def _load_model(model_path: Path | None):
    from embeddings.checkpoint import UntrainedModelWarning, load_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UntrainedModelWarning)
        try:
            model = load_model(checkpoint_argument(model_path) if model_path else None)
        except (FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
    for warning in caught:
        typer.secho(f"warning: {warning.message}", fg=typer.colors.YELLOW, err=True)
    return model


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
        return LazyModel(ModelIdentity.from_dict(known), lambda: _load_model(model_path))
    genre_model = _load_model(model_path)
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


def _print_ingest_summary(data: dict) -> None:
    typer.echo(
        f"indexed {data['analysed']}, unchanged {data['skipped']}, "
        f"moved/touched {data['reused']}, failed {len(data['failed'])}, "
        f"missing {data['missing']} "
        f"({data['audio_hours']:.2f} h of audio in {data['wall_seconds']:.1f} s)"
    )
    if data["inference"]:
        typer.echo(f"inference: {data['inference']}")
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


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Folders or files to index.")],
    data_dir: DataDir = None,
    model: Annotated[
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
    aggregate: Annotated[
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
    nice: Annotated[
        int,
        typer.Option(
            help="CPU priority of the ingest, 0-19: higher leaves more of the CPU to other "
            "programs, such as `sonic serve` answering while the library is analysed.",
            min=0,
            max=19,
        ),
    ] = 10,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Analyse every audio file under PATHS and add it to the catalog.

    Re-runs skip unchanged files, re-analyse changed ones, and mark vanished ones missing.
    """
    from ingest.lock import CatalogBusyError, catalog_lock

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        _fail(f"no such file or folder: {', '.join(missing)}")
    with _open_catalog(data_dir) as catalog:
        try:
            # the lock first: a busy catalog is reported at once, before torch loads
            with catalog_lock(catalog.paths.root) as held:
                _lower_priority(nice)  # decode workers inherit it
                from embeddings.aggregation import AGGREGATIONS
                from ingest.pipeline import IngestOptions
                from ingest.pipeline import ingest as run_ingest

                if aggregate not in AGGREGATIONS:
                    _fail(f"--aggregate must be one of {', '.join(AGGREGATIONS)}")
                options = IngestOptions(
                    workers=workers, inference_threads=inference_threads,
                    batch_size=batch_size, aggregation=aggregate, device=device,
                    precision=precision, heatmaps=heatmaps,
                )  # fmt: skip
                genre_model = _model_for_ingest(catalog, model)
                bar = _TqdmProgress(progress and not as_json)
                summary = run_ingest(paths, catalog, genre_model, options, bar, held)
        except CatalogBusyError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted: finished tracks are saved; run the same command to continue", 130)
    data = summary.to_dict()
    _emit(data, as_json, _print_ingest_summary)
    if summary.files_seen == 0:
        _fail(f"no audio files found under {', '.join(map(str, paths))}")
    if summary.processed == 0 and summary.failed:
        _fail("no file could be processed")


@app.command()
def genres(data_dir: DataDir = None, as_json: JsonFlag = False) -> None:
    """Count tracks per predicted genre."""
    from catalog.queries import genre_counts

    with _open_catalog(data_dir) as catalog:
        data = genre_counts(catalog)

    def render(rows: list[dict]) -> None:
        if not rows:
            typer.echo("no analysed tracks yet: run `sonic ingest PATH`")
        for row in rows:
            conf = row["mean_confidence"]
            typer.echo(f"{row['genre']:<12} {row['tracks']:>7}  (mean confidence {conf:.2f})")

    _emit(data, as_json, render)


def _render_tracks(rows: list[dict], score: bool = False) -> None:
    for t in rows:
        lead = f"{t['score']:.3f}  " if score else ""
        conf = f" {t['confidence']:.2f}" if t.get("confidence") is not None else ""
        who = " - ".join(x for x in (t.get("artist"), t.get("title")) if x)
        typer.echo(
            f"{lead}#{t['id']:<6} {t.get('genre') or t['status']:<10}{conf}  {who}  [{t['path']}]"
        )


@app.command()
def tracks(
    data_dir: DataDir = None,
    genre: Annotated[str | None, typer.Option(help="Only this predicted genre.")] = None,
    status: Annotated[str | None, typer.Option(help="ok, failed or missing.")] = None,
    artist: Annotated[str | None, typer.Option()] = None,
    album: Annotated[str | None, typer.Option()] = None,
    query: Annotated[
        str | None, typer.Option("--query", "-q", help="Text in title/artist/album.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Browse tracks, by genre (most confident first), status, artist, album or text."""
    from catalog.queries import browse

    with _open_catalog(data_dir) as catalog:
        page = browse(catalog, genre, status, artist, album, query, limit, offset)

    def render(data: dict) -> None:
        for t in data["tracks"]:
            _render_tracks([t])
            if t["error"]:
                typer.echo(f"    reason: {t['error']}")
        shown = data["offset"] + len(data["tracks"])
        typer.echo(f"({shown} of {data['total']})")

    _emit(page, as_json, render)


@app.command()
def similar(
    track: Annotated[str, typer.Argument(help="Track id or file path.")],
    k: Annotated[int, typer.Option("-k", help="How many neighbours.", min=1)] = 10,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Sound-alike tracks: nearest neighbours by cosine similarity of embeddings."""
    from catalog.queries import similar as find_similar

    with _open_catalog(data_dir) as catalog:
        track_id = _resolve(catalog, track)
        try:
            rows = find_similar(catalog, track_id, k)
        except LookupError as exc:
            _fail(str(exc))
    _emit(
        {"track_id": track_id, "neighbours": rows},
        as_json,
        lambda d: _render_tracks(d["neighbours"], score=True),
    )


@app.command()
def show(
    track: Annotated[str, typer.Argument(help="Track id or file path.")],
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Everything the catalog holds for one track."""
    from catalog.queries import track_details

    with _open_catalog(data_dir) as catalog:
        data = track_details(catalog, _resolve(catalog, track))

    def render(d: dict) -> None:
        for key in ("id", "path", "title", "artist", "album", "track_number", "duration_s",
                    "sample_rate", "channels", "format", "status", "error", "warning",
                    "model_id", "genre", "confidence", "n_segments", "in_index"):  # fmt: skip
            if d.get(key) is not None:
                typer.echo(f"{key:<13} {d[key]}")
        if d["probabilities"]:
            typer.echo("probabilities:")
            for genre, p in sorted(d["probabilities"].items(), key=lambda x: -x[1]):
                typer.echo(f"  {genre:<12} {p:6.3f} {'#' * round(p * 40)}")
        if d["timeline"]:
            typer.echo("timeline:")
            for seg in d["timeline"]:
                span = f"{seg['start_s']:7.1f}-{seg['end_s']:<7.1f}"
                typer.echo(f"  {span} {seg['genre']:<10} {seg['confidence']:.2f}")
        if d.get("explanation"):
            e = d["explanation"]
            typer.echo(f"why {e['genre']}: {e['sentence']}")
            typer.echo(f"  heatmap over {e['window_s'][0]:.0f}-{e['window_s'][1]:.0f} s")
        typer.echo("artefacts:")
        for name, value in d["artefacts"].items():
            typer.echo(f"  {name:<8} {value or '-'}")

    _emit(data, as_json, render)


@app.command()
def explain(
    track: Annotated[str, typer.Argument(help="Track id or file path.")],
    method: Annotated[
        str, typer.Option(help="gradcam, ig (Integrated Gradients) or occlusion.")
    ] = "gradcam",
    genre: Annotated[
        str | None, typer.Option(help="Genre to explain (default: the predicted one).")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="The checkpoint that analysed the track (default: shipped).")
    ] = None,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Show which frequencies and moments drove a genre prediction (cached on disk)."""
    from ingest.explain import ExplainError, explain_track

    genre_model = _load_model(model)
    with _open_catalog(data_dir) as catalog:
        track_id = _resolve(catalog, track)
        try:
            data = explain_track(catalog, track_id, genre_model, method, genre)
        except ExplainError as exc:
            _fail(str(exc))

    def render(d: dict) -> None:
        start, end = d["window_s"]
        typer.echo(f"{d['method']} for '{d['genre']}' over {start:.0f}-{end:.0f} s")
        typer.echo(d["sentence"])
        if d["convergence_delta"] is not None:
            typer.echo(f"IG convergence delta {d['convergence_delta']:.4f}")
        typer.echo(f"heatmap {d['heatmap']}{' (cached)' if d['cached'] else ''}")

    _emit(data, as_json, render)


@app.command("explain-similar")
def explain_similar(
    track: Annotated[str, typer.Argument(help="Track id or file path.")],
    other: Annotated[str, typer.Argument(help="The track it was found similar to.")],
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Why two tracks are close: genre overlap, band focus and their closest moments."""
    from catalog.why_similar import why_similar

    with _open_catalog(data_dir) as catalog:
        data = why_similar(catalog, _resolve(catalog, track), _resolve(catalog, other))

    def render(d: dict) -> None:
        if d["cosine"] is not None:
            typer.echo(f"cosine {d['cosine']:.3f}")
        typer.echo(d["sentence"])
        for m in d["closest_moments"]:
            typer.echo(
                f"  {m['a_start_s']:7.1f} s ~ {m['b_start_s']:7.1f} s  cosine {m['cosine']:.3f}"
            )

    _emit(data, as_json, render)


@app.command()
def status(data_dir: DataDir = None, as_json: JsonFlag = False) -> None:
    """Catalog statistics and the health of the FAISS index."""
    from catalog.queries import stats

    with _open_catalog(data_dir) as catalog:
        data = stats(catalog)

    def render(d: dict) -> None:
        typer.echo(f"data dir      {d['data_dir']}")
        typer.echo("tracks        " + ", ".join(f"{k} {v}" for k, v in d["tracks"].items()))
        typer.echo(f"audio         {d['audio_hours']:.2f} h analysed")
        typer.echo(f"model         {d['active_model_id'] or '-'}")
        if d["other_model_tracks"]:
            typer.echo(
                f"              {d['other_model_tracks']} tracks were analysed with another "
                "model: out of search until `sonic ingest` redoes their folders"
            )
        idx = d["index"]
        state = "consistent" if idx["consistent"] else "INCONSISTENT (repaired on next use)"
        typer.echo(f"index         {idx.get('file_vectors', 0)} vectors, {state}")
        for item in d["top_failure_reasons"]:
            typer.echo(f"  failed x{item['tracks']}: {item['reason']}")

    _emit(data, as_json, render)


from ui import pretrain_cli, serve_cli, similarity_cli, stems_cli, train_cli  # noqa: E402

train_cli.register(app)
pretrain_cli.register(app)
similarity_cli.register(app)
stems_cli.register(app)
serve_cli.register(app)

if __name__ == "__main__":  # `python -m ui.cli` runs the checkout's code
    app()
