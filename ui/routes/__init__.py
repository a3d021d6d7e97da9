"""The REST API's routes, one ``APIRouter`` per resource (OpenSubsonic is ``ui.subsonic``).

Each module's ``router(state)`` builds its routes over the service's one
:class:`~ui.state.ServiceState` (closures, not a dependency per request: the hot
reads stay as cheap as a plain function call). Every JSON route names a pydantic
``response_model``, so ``/openapi.json`` documents every field, yet answers with a
``SafeJSONResponse`` it rendered itself: FastAPI skips validating and re-encoding a
returned ``Response``, which for a track's details (hundreds of timeline floats)
would cost more than the read. ``tests/test_service.py`` validates real answers
against the models instead, so the documentation cannot drift from the JSON.
"""

from __future__ import annotations

from fastapi import FastAPI

from ui.routes import (
    files,
    genres,
    jobs,
    library_map,
    media_server,
    playlists,
    service_info,
    similar,
    stems,
    tracks,
)
from ui.state import ServiceState

# In the order they are matched (no two overlap) and listed in /openapi.json.
RESOURCES = (
    service_info, tracks, similar, genres, files, stems, jobs, playlists, library_map,
    media_server,
)  # fmt: skip


def add_routes(app: FastAPI, state: ServiceState) -> None:
    """Every REST resource's routes, on ``app``, as plain routes.

    Not ``app.include_router``: FastAPI 0.165 keeps an included router as one nested
    entry that it matches through on every request (more work before the handler on
    the hot path), and the app's route list would no longer be the list of routes
    that ``tests/web_probes.py`` and the token test walk. The routers group the
    routes in the code; the app gets the routes themselves, in this order.
    """
    for resource in RESOURCES:
        app.router.routes.extend(resource.router(state).routes)
