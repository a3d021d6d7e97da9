"""``/map``: every indexed track projected to 2-D, for the library map."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from pydantic import Field

from catalog.projection import METHODS, library_map
from ui.routes.schemas import Doc, errors
from ui.safe_json import SafeJSONResponse
from ui.state import ServiceState


class MapPoint(Doc):
    id: int
    x: float
    y: float
    genre: str | None
    title: str = Field(description="The title, or the file name without one.")
    artist: str | None
    album: str | None
    confidence: float | None


class LibraryMap(Doc):
    method: str = Field(description="pca or umap.")
    total: int = Field(description="Indexed tracks.")
    shown: int = Field(description="Points drawn (a sample past max_points).")
    points: list[MapPoint]


def router(state: ServiceState) -> APIRouter:
    api = APIRouter(tags=["tracks"], default_response_class=SafeJSONResponse)

    @api.get("/map", response_model=LibraryMap, responses=errors(400))
    def library_map_route(
        method: Annotated[str, Query(pattern="^(" + "|".join(METHODS) + ")$")] = "pca",
        max_points: Annotated[int, Query(ge=10, le=100_000)] = 20_000,
    ) -> Response:
        """Every indexed track projected to 2-D (PCA, or UMAP when installed)."""
        try:
            points = library_map(state.fresh(), method, max_points)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return SafeJSONResponse(points)

    return api
