"""Options every ``sonic`` command spells the same way, declared once.

Kept free of heavy imports: every CLI module imports it at start-up, and
``sonic --help`` should not wait for torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from catalog.paths import DATA_DIR_ENV

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar=DATA_DIR_ENV,
        help="Where the catalog lives (default: $SONIC_DATA_DIR, else the user data dir).",
        show_default=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

SHIPPED = "shipped"


def checkpoint_argument(entry: Path) -> Path:
    """Let ``shipped`` name the packaged model, so nobody has to find where pip put it.

    A real file called ``shipped`` in the working directory still wins: a path the
    user can see should never be silently replaced.
    """
    if str(entry) == SHIPPED and not entry.exists():
        from embeddings.checkpoint import DEFAULT_CHECKPOINT

        return DEFAULT_CHECKPOINT
    return entry
