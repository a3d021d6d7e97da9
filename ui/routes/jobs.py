"""``/jobs``: a background job's status, progress and result, and asking it to stop."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response
from pydantic import Field

from ui.routes.params import JobId
from ui.routes.schemas import Doc, errors
from ui.safe_json import SafeJSONResponse
from ui.state import ServiceState


class StemsResult(Doc):
    """A finished separation (``ingest.stems``): the stem set and where to fetch it."""

    track_id: int | None = None
    cached: bool | None = Field(None, description="Answered from the cache.")
    recomputed_because: str | None = None
    id: int | None = Field(None, description="The stem set's id.")
    content_hash: str | None = None
    model: str | None = Field(None, description="The Demucs model.")
    settings_hash: str | None = None
    settings: dict[str, int | float | str | bool | None] | None = None
    status: str | None = None
    error: str | None = None
    directory: str | None = None
    format: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    frames: int | None = None
    duration_s: float | None = None
    device: str | None = None
    compute_seconds: float | None = None
    created_at: str | None = Field(None, description="ISO 8601.")
    updated_at: str | None = Field(None, description="ISO 8601.")
    stems: dict[str, str] = Field(description="Stem name -> file.")
    urls: dict[str, str] = Field(description="Stem name -> URL.")


class Job(Doc):
    id: str
    kind: str = Field(description='What it does: "stems".')
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    progress: float | None = Field(description="0..1 when known.")
    detail: str | None = Field(description='Progress in words ("chunk 12 / 80").')
    chunks_done: int | None = Field(description="Chunks separated so far (work that counts).")
    chunks_total: int | None = Field(description="Chunks in all (null until known).")
    result: StemsResult | None = Field(description="When done.")
    error: str | None = Field(description="When failed.")
    created_at: float = Field(description="Unix time.")
    started_at: float | None
    finished_at: float | None


def router(state: ServiceState) -> APIRouter:
    api = APIRouter(tags=["stems"], default_response_class=SafeJSONResponse)

    @api.get("/jobs/{job_id}", response_model=Job, responses=errors(404))
    async def job(job_id: JobId) -> Response:
        """A background job's status, progress and result."""
        found = state.jobs.get(job_id)
        if found is None:
            raise HTTPException(404, f"no job {job_id}")
        return SafeJSONResponse(found.to_dict())

    @api.post("/jobs/{job_id}/cancel", response_model=Job, responses=errors(404))
    async def cancel_job(job_id: JobId) -> Response:
        """Ask a queued or running job to stop; it ends as "cancelled" at its next step."""
        found = state.jobs.cancel(job_id)
        if found is None:
            raise HTTPException(404, f"no job {job_id}")
        return SafeJSONResponse(found.to_dict())

    return api
