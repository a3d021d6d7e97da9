"""Options every ``sonic`` command spells the same way, and the helpers they share, once.

Kept free of heavy imports: every CLI module imports it at start-up, and
``sonic --help`` should not wait for torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from typer.core import TyperCommand

from catalog.paths import DATA_DIR_ENV, default_data_dir, displayable

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar=DATA_DIR_ENV,
        help="Where the catalog lives (default: $SONIC_DATA_DIR, else the user data dir).",
        show_default=False,
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="SONIC_DATABASE_URL",
        help=(
            "A shared PostgreSQL catalog (postgresql+psycopg://USER@HOST/DB) instead of "
            "the SQLite file in the data dir (default: $SONIC_DATABASE_URL)."
        ),
        show_default=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

# One name per concept across commands (issue 26). The spellings they replace keep
# working for one release, unlisted in --help, with a deprecation message:
# a genre-model file is --checkpoint everywhere, a separation model --demucs-model,
# a run folder --run-dir, anything else a command writes --output.
RENAMED_OPTIONS: dict[str, dict[str, str]] = {
    "ingest": {"--model": "--checkpoint", "--aggregate": "--aggregation"},
    "explain": {"--model": "--checkpoint"},
    "serve": {"--model": "--checkpoint"},
    "evaluate-similarity": {"--model": "--checkpoint"},
    "train": {"--out": "--run-dir"},
    "pretrain": {"--out": "--checkpoint"},
    "dataset-report": {"--out": "--output"},
    "stems": {"--model": "--demucs-model"},
    "remix": {"--model": "--demucs-model", "--out": "--output", "--out-format": "--output-format"},
}

SHIPPED = "shipped"


class _RenamedOptions(TyperCommand):
    """A command that still accepts the old spellings of its renamed options."""

    renamed: dict[str, str] = {}

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        spelled = []
        for i, arg in enumerate(args):
            if arg == "--":  # everything after it is an argument, never an option
                spelled.extend(args[i:])
                break
            name, eq, value = arg.partition("=")
            if name in self.renamed:
                new = self.renamed[name]
                typer.secho(
                    f"warning: {name} is deprecated and will be removed in the next release; "
                    f"use {new}",
                    fg=typer.colors.YELLOW,
                    err=True,
                )
                arg = new + eq + value
            spelled.append(arg)
        return super().parse_args(ctx, spelled)


def command_class(name: str) -> type[TyperCommand]:
    """The command class for ``sonic NAME``: one that knows its old option names."""
    renamed = RENAMED_OPTIONS.get(name)
    if not renamed:
        return TyperCommand
    return type(f"Renamed_{name.replace('-', '_')}", (_RenamedOptions,), {"renamed": renamed})


def command(app: typer.Typer, name: str):
    """``app.command(name)``, accepting the command's deprecated option spellings."""
    return app.command(name, cls=command_class(name))


def checkpoint_argument(entry: Path) -> Path:
    """Let ``shipped`` name the packaged model, so nobody has to find where pip put it.

    A real file called ``shipped`` in the working directory still wins: a path the
    user can see should never be silently replaced.
    """
    if str(entry) == SHIPPED and not entry.exists():
        from embeddings.model_handle import DEFAULT_CHECKPOINT

        return DEFAULT_CHECKPOINT
    return entry


def emit(data, as_json: bool, render: Callable) -> None:
    """Print a command's result: JSON for scripts, else ``render``'s text.

    Everything printed goes through :func:`catalog.paths.displayable` first, so a file
    name that is not UTF-8 shows as ``\\xNN`` escapes instead of crashing the print.
    """
    data = displayable(data)
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        render(data)


def fail(message: str, code: int = 1) -> NoReturn:
    """Say what went wrong on stderr and exit with ``code``."""
    typer.secho(f"error: {displayable(message)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def open_catalog(data_dir: Path | None, database_url: str | None = None):
    """The catalog in ``data_dir`` (else the default), on ``database_url`` if given.

    A bad URL, or a PostgreSQL server that cannot be reached, is a clear error.
    """
    from sqlalchemy.exc import OperationalError

    from catalog.db import DatabaseUrlError
    from catalog.store import Catalog

    try:
        return Catalog(data_dir or default_data_dir(), database_url)
    except DatabaseUrlError as exc:
        fail(str(exc))
    except OperationalError as exc:
        fail(f"cannot open the catalog database: {exc.orig}")


def resolve(catalog, ref: str) -> int:
    """The track id for a command's TRACK argument (an id or a path), or exit saying why."""
    from catalog.queries import TrackNotFound, resolve_track

    try:
        return resolve_track(catalog, ref)
    except TrackNotFound as exc:
        fail(str(exc))


def load_model(model_path: Path | None):
    """The genre model in ``model_path`` (default: the shipped one), or exit saying why."""
    import warnings

    from embeddings.checkpoint import UntrainedModelWarning
    from embeddings.checkpoint import load_model as load_checkpoint_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UntrainedModelWarning)
        try:
            model = load_checkpoint_model(checkpoint_argument(model_path) if model_path else None)
        except (FileNotFoundError, ValueError) as exc:
            fail(str(exc))
    for warning in caught:
        typer.secho(f"warning: {warning.message}", fg=typer.colors.YELLOW, err=True)
    return model
