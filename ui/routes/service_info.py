"""What this process serves: ``/health`` (liveness, index, device, model) and ``/stats``."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response
from pydantic import Field

from ui.routes.schemas import Doc, Features
from ui.safe_json import SafeJSONResponse
from ui.state import ServiceState


class AnnParams(Doc):
    """The approximate index's tuned search effort (empty while searching exactly)."""

    efSearch: int | None = Field(None, description="HNSW.")
    nprobe: int | None = Field(None, description="IVF.")
    tuned_recall_at_10: float | None = None
    target: float | None = None
    built_from: str | None = Field(None, description='"database" for a batched IVF build.')


class SearchStatus(Doc):
    vectors: int
    wanted: str = Field(description="The structure the size calls for: flat, hnsw or ivf.")
    searching_with: str = Field(description="The structure answering now.")
    params: AnnParams
    building: bool = Field(description="An approximate index is being built.")
    exact_index_kept: bool = Field(
        description="The exact index is held beside the approximate one (false once an "
        "IVF index is the only copy of the vectors)."
    )


class Health(Doc):
    status: Literal["ok"]
    tracks_indexed: int
    index_version: int
    search: SearchStatus
    device: str
    catalog_model_id: str | None
    features: Features


class TrackCounts(Doc):
    ok: int
    failed: int
    missing: int


class FailureReason(Doc):
    reason: str | None
    tracks: int


class IndexState(Doc):
    vectors: int
    version: int
    db_version: int
    current: bool = Field(description="The index holds the catalog's latest version.")


class Stats(Doc):
    data_dir: str
    database: str = Field(description="The SQLite file, or the URL without its password.")
    tracks: TrackCounts
    audio_hours: float
    active_model_id: str | None
    other_model_tracks: int = Field(description="Analysed by an earlier model: not searched.")
    top_failure_reasons: list[FailureReason]
    index: IndexState
    device: str
    service_model_id: str
    service_model_trained: bool
    search: SearchStatus
    features: Features


def router(state: ServiceState) -> APIRouter:
    api = APIRouter(tags=["service"], default_response_class=SafeJSONResponse)

    @api.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @api.get("/health", response_model=Health)
    def health() -> Response:
        """Liveness plus what this process serves: tracks, index, device, model."""
        cat = state.fresh()
        index = cat.index()
        return SafeJSONResponse(
            {
                "status": "ok",
                "tracks_indexed": len(index),
                "index_version": index.version,
                "search": index.ann_status(),
                "device": state.device(),
                "catalog_model_id": cat.active_model_id,
                "features": {
                    "explanations": state.features.explanations.available,
                    "stems": state.features.stems.available,
                },
            }
        )

    @api.get("/stats", response_model=Stats)
    def stats() -> Response:
        """Catalog statistics, the running device and the models."""
        return SafeJSONResponse(state.summary())

    return api
