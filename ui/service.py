"""The REST API (FastAPI) with the Gradio UI mounted at ``/ui``: the app factory.

Thin: each route (``ui.routes``, one module per resource) parses its arguments,
asks a function of ``catalog``, ``ingest`` or ``ui.optional`` and returns its JSON.
Security defaults: the CLI binds to 127.0.0.1; audio is served only from the
library roots, heatmaps and stems only from the data directory, ids are integers
and stem names a closed alphabet, so no request names a file; request bodies are
limited (413); a Host header the service was not told of is refused (400, DNS
rebinding); with ``SONIC_API_TOKEN`` set, every route (the UI, the docs and
``/health`` included) requires the token, and playlists carry per-track signed,
expiring links instead (``ui.signed_links``); all three are ``ui.guard``. The
OpenSubsonic API under ``/rest/`` (``ui.subsonic``) is the exception: Subsonic
clients cannot send the token, so its users log in there with their own accounts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI

from ingest.busy_signal import BusyBeacon
from ui.activity import ActivitySignal
from ui.docs_assets import add_offline_docs
from ui.errors import add_error_handlers
from ui.guard import SUBSONIC_PREFIX, TOKEN_COOKIE, Guard, host_name
from ui.routes import add_routes
from ui.routes.params import MAX_TRACK_ID
from ui.routes.quick import QUICK_READ_S, quick_read
from ui.safe_json import SafeJSONResponse
from ui.state import (
    LOOPBACK_HOSTS,
    TOKEN_ENV,
    ServiceState,
    Settings,
    allowed_hosts_from_env,
)
from ui.subsonic import mount as mount_subsonic

UI_PATH = "/ui"
# What other modules and tests import from here, now defined where they belong.
__all__ = [
    "MAX_TRACK_ID", "QUICK_READ_S", "SUBSONIC_PREFIX", "TOKEN_COOKIE", "UI_PATH", "Guard",
    "SafeJSONResponse", "create_app", "host_name", "quick_read",
]  # fmt: skip


def create_app(
    data_dir: Path,
    *,
    settings: Settings | None = None,
    state: ServiceState | None = None,
    mount_ui: bool = True,
) -> FastAPI:
    """The FastAPI app on the catalog in ``data_dir`` (Gradio UI at ``/ui``)."""
    if state is None:
        settings = settings or Settings(data_dir=Path(data_dir))
        if settings.token is None and os.environ.get(TOKEN_ENV):
            settings.token = os.environ[TOKEN_ENV]
        settings.allowed_hosts = [*settings.allowed_hosts, *allowed_hosts_from_env()]
        state = ServiceState(settings)
    settings = state.settings
    beacon = BusyBeacon(settings.data_dir)  # ingests here yield while requests come

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        # Load the index (and start the approximate one) before accepting requests.
        await anyio.to_thread.run_sync(state.fresh)
        yield
        state.close()
        beacon.close()

    app = FastAPI(
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
        title="Sonic Catalog",
        summary="Sound-alike search, genre browsing and analysis of a music library.",
        version="0.1.0",
        docs_url=None,  # served from local assets below: /docs works without internet
        redoc_url=None,
    )
    add_offline_docs(app)
    app.state.sonic = state
    add_error_handlers(app)
    add_routes(app, state)  # one APIRouter per resource (ui.routes)
    mount_subsonic(app, state)  # /rest/: OpenSubsonic, with its own users
    before: dict[str, Callable[[], object]] = {}
    if mount_ui:
        import gradio as gr

        from ui.web import CSS, Uploads, build_ui, head

        uploads = Uploads(settings.upload_cache_bytes)
        # Make room before each upload, so the upload folder stays under the cap.
        before[UI_PATH + "/gradio_api/upload"] = uploads.trim
        gr.mount_gradio_app(
            app,
            build_ui(state, uploads),
            path=UI_PATH,
            ssr_mode=False,
            max_file_size=settings.max_upload_bytes,
            blocked_paths=[str(settings.data_dir)],  # Gradio never serves the catalog's files
            footer_links=[],
            css=CSS,
            head=head(),  # the player and navigation script (ui/web/player.js), inline
        )
    app.add_middleware(
        Guard,
        token=settings.token,
        max_body=settings.max_upload_bytes,
        before=before,
        allowed_hosts=[*LOOPBACK_HOSTS, *settings.allowed_hosts],
    )
    app.add_middleware(ActivitySignal, beacon=beacon)  # outermost: refused requests count too

    return app
