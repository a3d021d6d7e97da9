"""``sonic learn-genres`` and ``sonic tag-genres``: the library's own genres, from its tags.

Registered by ``ui.cli``; imports nothing from it. Both take the catalog's write
lock, so neither races an ingest.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ui.options import DatabaseUrl, DataDir, JsonFlag
from ui.options import emit as _emit
from ui.options import fail as _fail
from ui.options import open_catalog as _open_catalog
from ui.options import resolve as _resolve


def _render_learnt(d: dict) -> None:
    typer.echo(
        f"library genre model v{d['model_version']}: {len(d['genres'])} genres from "
        f"{d['trained_on']} tagged tracks on {d['albums']} albums "
        f"({d['tagged']} of {d['tracks']} analysed tracks carry a genre tag)"
    )
    typer.echo(
        f"cross-validated by album ({d['folds']} folds): accuracy {d['accuracy']:.3f}, "
        f"ECE {d['ece_before_temperature']:.3f} -> {d['ece']:.3f} with temperature "
        f"{d['temperature']:.2f}"
    )
    typer.echo(
        f"'uncertain' below confidence {d['threshold']:.3f}: precision "
        f"{d['precision_at_threshold']:.3f} (target {d['target_precision']:.2f}) on "
        f"{d['coverage_at_threshold']:.0%} of tracks answered"
    )
    typer.echo(f"{'genre':<16} {'tracks':>6} {'precision':>9} {'recall':>7} {'prec@thr':>8}")
    for genre, m in d["per_genre"].items():
        typer.echo(
            f"{genre:<16} {m['tracks']:>6} {m['precision']:>9.3f} {m['recall']:>7.3f} "
            f"{m['precision_at_threshold']:>8.3f}"
        )
    for genre, info in d["left_out"].items():
        typer.echo(f"left out: {genre} ({info['tracks']} tracks, {info['reason']})")
    if d.get("shipped_threshold") is not None:
        typer.echo(f"shipped GTZAN head: 'uncertain' below {d['shipped_threshold']:.3f} here")


def learn_genres(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    min_tracks: Annotated[
        int, typer.Option(help="Learn only genres with at least this many tagged tracks.", min=2)
    ] = 8,
    target_precision: Annotated[
        float,
        typer.Option(help="Answer only where cross-validation is right this often.", min=0.0,
                     max=1.0),
    ] = 0.9,  # fmt: skip
    as_json: JsonFlag = False,
) -> None:
    """Learn the library's own genres from its genre tags, over the stored embeddings.

    Cross-validated by album; prints per-genre precision and recall and the genres left
    out. Refit on demand: each run stores a new version. No audio is analysed.
    """
    from catalog.genre_names import GenreMappingError
    from ingest.library_genres import NotEnoughTags, learn
    from ingest.lock import CatalogBusyError, catalog_lock

    with _open_catalog(data_dir, database_url) as catalog:
        try:
            with catalog_lock(catalog.paths.root):
                report = learn(catalog, min_tracks, target_precision)
        except (NotEnoughTags, GenreMappingError, CatalogBusyError) as exc:
            _fail(str(exc))
    _emit(report, as_json, _render_learnt)


def tag_genres(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Write the tags (default: only show what would be).")
    ] = False,
    undo: Annotated[
        bool, typer.Option("--undo", help="Restore the genre tags --apply wrote, exactly.")
    ] = False,
    mistagged: Annotated[
        bool,
        typer.Option("--mistagged", help="Also replace tags the model confidently contradicts."),
    ] = False,
    track: Annotated[
        list[str] | None, typer.Option("--track", help="Only this track (id or path); repeatable.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Write the library model's confident genre into files that have none (dry run first).

    Each old genre field is backed up in the catalog before it is written; --undo puts
    it back byte for byte (and leaves alone a field changed since).
    """
    from ingest import genre_tagging
    from ingest.lock import CatalogBusyError, catalog_lock

    if apply and undo:
        _fail("--apply and --undo cannot be combined")
    with _open_catalog(data_dir, database_url) as catalog:
        ids = {_resolve(catalog, t) for t in track} if track else None
        try:
            with catalog_lock(catalog.paths.root):
                if undo:
                    data = {"undone": genre_tagging.undo(catalog, ids)}
                else:
                    rows = genre_tagging.plan(catalog, mistagged, ids)
                    data = {"dry_run": not apply, "plan": rows}
                    if apply:
                        data["outcomes"] = genre_tagging.apply(catalog, rows)
        except CatalogBusyError as exc:
            _fail(str(exc))

    def render(d: dict) -> None:
        if "undone" in d:
            for o in d["undone"]:
                typer.echo(f"  {o['path']}: " + (o.get("error") or f"restored {o['restored']}"))
            typer.echo(f"{sum('error' not in o for o in d['undone'])} genre tags restored")
            return
        for row in d["plan"]:
            was = f" (was {row['raw_tag']})" if row.get("raw_tag") else ""
            typer.echo(f"  #{row['id']} {row['path']}: {row['write']} "
                       f"({row['confidence']:.2f}){was}")  # fmt: skip
        if d["dry_run"]:
            typer.echo(f"{len(d['plan'])} tracks would be tagged; --apply writes them")
            return
        for o in d["outcomes"]:
            if "error" in o:
                typer.echo(f"  not written: {o['error']}")
        written = sum("error" not in o for o in d["outcomes"])
        typer.echo(f"{written} genre tags written (undo: sonic tag-genres --undo)")

    _emit(data, as_json, render)
    if not undo and apply and any("error" in o for o in data["outcomes"]):
        raise typer.Exit(1)


def render_views(views: dict) -> None:
    """The three genre views of ``sonic show``."""
    tag = views.get("tag")
    if tag is None:
        typer.echo(f"{'genre tag':<13} (not read yet)")
    else:
        raw = f"  (file: {'; '.join(tag['raw'])})" if tag["raw"] else ""
        typer.echo(f"{'genre tag':<13} {', '.join(tag['genres']) or '-'}{raw}")
    for key, label in (("library", "library genre"), ("gtzan", "GTZAN genre")):
        v = views.get(key)
        if v is None:
            typer.echo(f"{label:<13} -" + ("  (run `sonic learn-genres`)" if key == "library"
                                              else ""))  # fmt: skip
            continue
        note = f" (best guess {v['predicted']})" if v["uncertain"] else ""
        typer.echo(f"{label:<13} {v['genre']} {v['confidence']:.2f}{note}  "
                   f"[uncertain below {v['threshold']:.2f}]")  # fmt: skip


def disagreeing(data_dir, limit: int, as_json: bool, database_url: str | None = None) -> None:
    """``sonic tracks --disagree``: likely mistagged files, confident suggestions for untagged."""
    from catalog.genre_views import disagreements

    with _open_catalog(data_dir, database_url) as catalog:
        data = disagreements(catalog, limit)
    if data["model_version"] is None:
        _fail("no library genre model yet: run `sonic learn-genres` first")

    def render(d: dict) -> None:
        typer.echo(f"tag contradicted ({d['total_mistagged']}):")
        for r in d["mistagged"]:
            typer.echo(f"  #{r['id']:<6} tag {', '.join(r['tag'])} -> {r['suggestion']} "
                       f"{r['confidence']:.2f}  [{r['path']}]")  # fmt: skip
        typer.echo(f"untagged, confident suggestion ({d['total_untagged']}):")
        for r in d["untagged"]:
            typer.echo(f"  #{r['id']:<6} {r['suggestion']} {r['confidence']:.2f}  [{r['path']}]")

    _emit(data, as_json, render)


def register(app: typer.Typer) -> None:
    app.command("learn-genres")(learn_genres)
    app.command("tag-genres")(tag_genres)
