"""The service's error answers: ``{"detail": ...}`` JSON with the status that says why.

A bad request is never a 500: an unknown track is 404, a feature absent from this
build says so (501 by default), an upload that cannot be analysed is 422, and a
detail that quotes an undecodable file name still renders (``SafeJSONResponse``).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.utils import is_body_allowed_for_status_code
from starlette.exceptions import HTTPException as StarletteHTTPException

from catalog import queries
from ingest.clip import ClipError
from ui.optional import FeatureUnavailable
from ui.safe_json import SafeJSONResponse


def add_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn the service's exceptions into JSON answers."""

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI's own handler, but a detail quoting a file name cannot fail to render.
        headers = getattr(exc, "headers", None)
        if not is_body_allowed_for_status_code(exc.status_code):
            return Response(status_code=exc.status_code, headers=headers)
        return SafeJSONResponse({"detail": exc.detail}, exc.status_code, headers)

    @app.exception_handler(queries.TrackNotFound)
    async def _not_found(_: Request, exc: queries.TrackNotFound) -> SafeJSONResponse:
        return SafeJSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(FeatureUnavailable)
    async def _unavailable(_: Request, exc: FeatureUnavailable) -> SafeJSONResponse:
        return SafeJSONResponse({"detail": exc.message}, status_code=exc.status_code)

    @app.exception_handler(ClipError)
    async def _bad_clip(_: Request, exc: ClipError) -> SafeJSONResponse:
        return SafeJSONResponse({"detail": f"cannot analyse the upload: {exc}"}, status_code=422)
