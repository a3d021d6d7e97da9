"""Explanations from the command line: ``sonic explain`` and ``sonic explain-similar``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ui.options import DatabaseUrl, DataDir, JsonFlag, command, load_model
from ui.options import emit as _emit
from ui.options import fail as _fail
from ui.options import open_catalog as _open_catalog
from ui.options import resolve as _resolve


def track_checkpoint(catalog, track_id: int) -> Path | None:
    """The checkpoint that analysed ``track_id``, if the catalog knows where it is.

    None (the shipped model) for a track not analysed yet or a model whose file the
    catalog never saw; :func:`ingest.explain.explain_track` then says which model
    analysed the track if it is not the shipped one.
    """
    from catalog.queries import track_details

    model_id = track_details(catalog, track_id).get("model_id")
    return catalog.checkpoint_of_model(model_id) if model_id else None


def explain(
    track: Annotated[str, typer.Argument(help="Track id or file path.")],
    method: Annotated[
        str, typer.Option(help="gradcam, ig (Integrated Gradients) or occlusion.")
    ] = "gradcam",
    genre: Annotated[
        str | None, typer.Option(help="Genre to explain (default: the predicted one).")
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="Genre-model checkpoint to explain with (default: the one that analysed the "
            "track, as the catalog recorded it at ingest)."
        ),
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Show which frequencies and moments drove a genre prediction (cached on disk)."""
    from ingest.explain import ExplainError, explain_track

    with _open_catalog(data_dir, database_url) as catalog:
        track_id = _resolve(catalog, track)
        genre_model = load_model(checkpoint or track_checkpoint(catalog, track_id))
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


def explain_similar(
    track: Annotated[str, typer.Argument(help="Track id or file path.")],
    other: Annotated[str, typer.Argument(help="The track it was found similar to.")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Why two tracks are close: genre overlap, band focus and their closest moments."""
    from catalog.why_similar import why_similar

    with _open_catalog(data_dir, database_url) as catalog:
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


def register(app: typer.Typer) -> None:
    """Add the explanation commands to ``sonic``."""
    command(app, "explain")(explain)
    command(app, "explain-similar")(explain_similar)
