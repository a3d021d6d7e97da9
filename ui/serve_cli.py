"""``sonic serve``: the REST API and the web UI in one uvicorn process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from catalog.paths import default_data_dir
from ui.options import DatabaseUrl, DataDir, JsonFlag, checkpoint_argument, command, fail

WILDCARD_BINDS = ("0.0.0.0", "::", "")  # bind every interface; not a name anyone uses
HTTP_IMPLEMENTATIONS = ("auto", "httptools", "h11")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def _check_installed(kind: str, choice: str) -> None:
    """A clear error for ``--http httptools`` or ``--loop uvloop`` where it is missing.

    uvicorn would fail later with an ImportError traceback; ``auto`` falls back to
    h11 and asyncio by itself.
    """
    import importlib.util

    if choice not in ("auto", "h11", "asyncio") and importlib.util.find_spec(choice) is None:
        fail(f"--{kind} {choice}: the {choice} package is not installed (pip install {choice})")


def serve(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; 0.0.0.0 exposes the service to your network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Genre-model checkpoint for uploads (default: the shipped one)."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto (GPU when present), cpu, cuda...")] = "auto",
    library: Annotated[
        list[Path] | None,
        typer.Option(
            help="Extra folder audio may be served from (the folders ingested are allowed "
            "already); repeatable."
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="A Host name the service answers to besides 127.0.0.1, localhost, [::1] and "
            "--host (also SONIC_ALLOWED_HOSTS, comma-separated); '*' answers to any; "
            "repeatable. Other names get 400 (DNS rebinding)."
        ),
    ] = None,
    models_dir: Annotated[
        Path | None,
        typer.Option(
            "--models-dir",
            help="Folder of Demucs weights for stem separation (NAME.yaml and its .th files); "
            "else $SONIC_DEMUCS_DIR, else Demucs' download cache.",
        ),
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Upload size limit (MB).", min=0.1)] = 50,
    access_log: Annotated[
        bool,
        typer.Option(
            help="Log one line per request (uvicorn's access log). Off by default: under "
            "load the log line cost about as much as a catalog read."
        ),
    ] = False,
    http: Annotated[
        Literal[HTTP_IMPLEMENTATIONS],
        typer.Option(
            help="HTTP parser: httptools (C, the faster), h11 (pure Python) or auto "
            "(httptools when installed).",
        ),
    ] = "auto",
    loop: Annotated[
        Literal[EVENT_LOOPS],
        typer.Option(
            help="Event loop: uvloop (libuv, the faster), asyncio or auto (uvloop when installed).",
        ),
    ] = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Serve the REST API (docs at /docs) and the web UI (/ui) on the catalog.

    With SONIC_API_TOKEN set, every route requires the token: an
    `Authorization: Bearer TOKEN` header, or open /ui?token=TOKEN once in a browser.
    Requests must name the service by an allowed Host: the loopback names, --host
    (unless it is 0.0.0.0 or ::, which name no host) and --allowed-host.
    """
    import gc
    import json
    import os

    import uvicorn

    _check_installed("http", http)
    _check_installed("loop", loop)
    from ui.service import create_app
    from ui.state import TOKEN_ENV, Settings, allowed_hosts_from_env

    settings = Settings(
        data_dir=data_dir or default_data_dir(),
        database_url=database_url,
        model_path=checkpoint_argument(checkpoint) if checkpoint else None,
        device=device,
        library_roots=[p.expanduser().absolute() for p in library or []],
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        models_dir=models_dir.expanduser().absolute() if models_dir else None,
        token=os.environ.get(TOKEN_ENV) or None,
        allowed_hosts=[*([] if host in WILDCARD_BINDS else [host]), *(allowed_host or [])],
    )  # create_app adds SONIC_ALLOWED_HOSTS
    info = {
        "url": f"http://{host}:{port}/ui/",
        "api_docs": f"http://{host}:{port}/docs",
        "data_dir": str(settings.data_dir),
        "token_required": settings.token is not None,
    }
    if as_json:
        typer.echo(json.dumps(info))
    else:
        typer.echo(f"Sonic Catalog on {info['url']} (API docs {info['api_docs']})")
        if settings.token:
            typer.echo(f"{TOKEN_ENV} is set: open {info['url']}?token=... once in the browser")
        if host in WILDCARD_BINDS and not allowed_host and not allowed_hosts_from_env():
            typer.echo(
                f"listening on {host}: answering only to the Host names 127.0.0.1, localhost "
                "and [::1]; add --allowed-host NAME for the names others use (or '*' for any)"
            )
        if host not in ("127.0.0.1", "localhost", "::1") and not settings.token:
            typer.secho(
                f"warning: listening on {host} without {TOKEN_ENV}: anyone who can reach "
                "this port can browse and stream the library",
                fg=typer.colors.YELLOW,
                err=True,
            )
    from sqlalchemy.exc import OperationalError

    from catalog.db import DatabaseUrlError

    try:
        app = create_app(settings.data_dir, settings=settings)
    except DatabaseUrlError as exc:
        fail(str(exc))
    except OperationalError as exc:
        fail(f"cannot open the catalog database: {exc.orig}")
    # What is built by now (torch, Gradio, the app: ~600k objects) lives as long as the
    # process. Left to the collector, every full collection walked all of it: a pause
    # of ~0.35 s for every request in flight. Frozen, collections walk only what
    # requests allocate.
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=host, port=port, access_log=access_log, http=http, loop=loop)


def register(app: typer.Typer) -> None:
    command(app, "serve")(serve)
