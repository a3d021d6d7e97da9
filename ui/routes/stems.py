"""A track's stems: start a separation (a background job), and serve a cached stem."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, Response
from pydantic import Field

from catalog import queries
from ui.optional import FeatureUnavailable, valid_stem_name
from ui.routes.links import AUDIO_FILE, audio_type
from ui.routes.params import TrackId
from ui.routes.schemas import Doc, errors
from ui.safe_json import SafeJSONResponse
from ui.state import ServiceState


class JobStarted(Doc):
    job_id: str
    status: str = Field(description="queued, running, done, failed or cancelled.")
    status_url: str = Field(description="Poll it: /jobs/{job_id}.")


def router(state: ServiceState) -> APIRouter:
    api = APIRouter(tags=["stems"], default_response_class=SafeJSONResponse)

    @api.post(
        "/tracks/{track_id}/stems",
        status_code=202,
        response_model=JobStarted,
        responses=errors(404, 501),
    )
    def separate(track_id: TrackId) -> Response:
        """Start separating the track into stems (a background job; cached stems return at once)."""
        queries.track_details(state.fresh(), track_id)  # raises TrackNotFound -> 404
        stems = state.features.stems
        if not stems.available:
            raise FeatureUnavailable(stems.why_not or stems.ABSENT)

        def work(set_progress) -> dict:
            def progress(done: float, total: float | None) -> None:
                set_progress(done / total if total else None)

            result = stems.separate(state.catalog, track_id, progress)
            result["urls"] = {
                name: f"/tracks/{track_id}/stems/{name}" for name in result.get("stems", {})
            }
            return result

        job = state.jobs.submit("stems", f"stems:{track_id}", work)
        return SafeJSONResponse(
            {"job_id": job.id, "status": job.status, "status_url": f"/jobs/{job.id}"},
            status_code=202,
        )

    @api.get(
        "/tracks/{track_id}/stems/{stem}",
        response_class=FileResponse,
        responses={200: AUDIO_FILE, **errors(404)},
    )
    def stem(track_id: TrackId, stem: str) -> FileResponse:
        """One cached stem of the track (HTTP range requests supported)."""
        if not valid_stem_name(stem):
            raise HTTPException(404, f"no stem named {stem!r}")
        cat = state.fresh()
        cached = state.features.stems.cached(cat, queries.track_details(cat, track_id))
        path = cached.get(stem)
        if path is None or not path.is_file():
            if not cached and not state.features.stems.available:
                raise HTTPException(
                    404, f"no stems for track {track_id}: {state.features.stems.why_not}"
                )
            raise HTTPException(404, f"no cached stem {stem!r} for track {track_id}")
        return FileResponse(path, media_type=audio_type(path))

    return api
