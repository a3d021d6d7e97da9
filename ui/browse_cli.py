"""Reading the catalog from the command line: genres, tracks, similar, show, status."""

from __future__ import annotations

from typing import Annotated

import typer

from ui.options import DatabaseUrl, DataDir, JsonFlag, command
from ui.options import emit as _emit
from ui.options import fail as _fail
from ui.options import open_catalog as _open_catalog
from ui.options import resolve as _resolve


def genres(
    data_dir: DataDir = None, database_url: DatabaseUrl = None, as_json: JsonFlag = False
) -> None:
    """Count tracks per predicted genre."""
    from catalog.queries import genre_counts

    with _open_catalog(data_dir, database_url) as catalog:
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


def tracks(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    genre: Annotated[
        str | None,
        typer.Option(help="Only this predicted genre (the library model's once learn-genres "
                     "ran; 'uncertain' lists what it will not name)."),
    ] = None,  # fmt: skip
    status: Annotated[str | None, typer.Option(help="ok, failed or missing.")] = None,
    artist: Annotated[str | None, typer.Option(help="Only this artist (exact).")] = None,
    album: Annotated[str | None, typer.Option(help="Only this album (exact).")] = None,
    query: Annotated[
        str | None, typer.Option("--query", "-q", help="Text in title/artist/album.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Tracks per page.", min=1)] = 50,
    offset: Annotated[int, typer.Option(help="Tracks to skip (the page's start).", min=0)] = 0,
    disagree: Annotated[
        bool,
        typer.Option("--disagree", help="Tracks whose genre tag the library model confidently "
                     "contradicts, and untagged ones it confidently names."),
    ] = False,  # fmt: skip
    as_json: JsonFlag = False,
) -> None:
    """Browse tracks, by genre (most confident first), status, artist, album or text."""
    from catalog.queries import browse

    if disagree:
        from ui.genres_cli import disagreeing

        return disagreeing(data_dir, limit, as_json, database_url)
    with _open_catalog(data_dir, database_url) as catalog:
        page = browse(catalog, genre, status, artist, album, query, limit, offset)

    def render(data: dict) -> None:
        for t in data["tracks"]:
            _render_tracks([t])
            if t["error"]:
                typer.echo(f"    reason: {t['error']}")
        shown = data["offset"] + len(data["tracks"])
        typer.echo(f"({shown} of {data['total']})")

    _emit(page, as_json, render)


def similar(
    track: Annotated[str, typer.Argument(help="Track id or file path.")],
    k: Annotated[int, typer.Option("-k", help="How many neighbours.", min=1)] = 10,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Sound-alike tracks: nearest neighbours by cosine similarity of embeddings."""
    from catalog.queries import similar as find_similar

    with _open_catalog(data_dir, database_url) as catalog:
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


def show(
    track: Annotated[str, typer.Argument(help="Track id or file path.")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Everything the catalog holds for one track."""
    from catalog.queries import track_details

    with _open_catalog(data_dir, database_url) as catalog:
        data = track_details(catalog, _resolve(catalog, track))

    def render(d: dict) -> None:
        for key in ("id", "path", "title", "artist", "album", "track_number", "duration_s",
                    "sample_rate", "channels", "format", "status", "error", "warning",
                    "model_id", "genre", "confidence", "n_segments", "in_index"):  # fmt: skip
            if d.get(key) is not None:
                typer.echo(f"{key:<13} {d[key]}")
        if d.get("genre_views"):
            from ui.genres_cli import render_views

            render_views(d["genre_views"])
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


def status(
    data_dir: DataDir = None, database_url: DatabaseUrl = None, as_json: JsonFlag = False
) -> None:
    """Catalog statistics and the health of the FAISS index."""
    from catalog.stats import stats

    with _open_catalog(data_dir, database_url) as catalog:
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


def register(app: typer.Typer) -> None:
    """Add the catalog-reading commands to ``sonic``."""
    for name, function in (("genres", genres), ("tracks", tracks), ("similar", similar),
                           ("show", show), ("status", status)):  # fmt: skip
        command(app, name)(function)
