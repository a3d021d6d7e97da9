"""A track's files: its audio (only from the library roots) and its Grad-CAM heatmap.

No request names a file: the id finds the catalogued path, and it is served only
when it lies in a library root (audio) or the data directory (heatmaps).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from catalog import queries
from ui.routes.links import AUDIO_FILE, audio_type
from ui.routes.params import TrackId
from ui.routes.schemas import errors
from ui.safe_json import SafeJSONResponse
from ui.state import ServiceState

PNG_FILE = {"content": {"image/png": {}}, "description": "The heatmap image."}


def router(state: ServiceState) -> APIRouter:
    api = APIRouter(tags=["files"], default_response_class=SafeJSONResponse)

    @api.get(
        "/tracks/{track_id}/audio",
        response_class=FileResponse,
        responses={200: AUDIO_FILE, **errors(403, 404)},
    )
    def audio(track_id: TrackId) -> FileResponse:
        """The track's file (HTTP range requests supported); only from library roots."""
        path = Path(queries.track_details(state.fresh(), track_id)["path"])
        if not path.is_file():
            raise HTTPException(404, f"track {track_id}'s file is missing")
        if not state.may_serve_audio(path):
            raise HTTPException(403, "this file is outside the library roots")
        return FileResponse(path, media_type=audio_type(path), filename=None)

    @api.get(
        "/tracks/{track_id}/heatmap.png",
        response_class=FileResponse,
        responses={200: PNG_FILE, **errors(404)},
    )
    def heatmap(track_id: TrackId) -> FileResponse:
        """The Grad-CAM heatmap of the track's prediction, when one was computed."""
        cat = state.fresh()
        explanations = state.features.explanations
        path = explanations.heatmap(cat, queries.track_details(cat, track_id))
        if path is None:
            reason = "" if explanations.available else f": {explanations.ABSENT}"
            raise HTTPException(404, f"no heatmap for track {track_id}{reason}")
        return FileResponse(path, media_type="image/png")

    return api
