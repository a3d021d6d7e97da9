"""``/genres``: tracks per genre, and where the library model contradicts the tags.

Hot reads on the event loop that answer with their JSON already rendered; the
models document it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import Field

from catalog import queries
from catalog.genre_views import disagreements
from ui.routes.quick import quick_read
from ui.routes.schemas import Doc
from ui.safe_json import SafeJSONResponse
from ui.state import ServiceState


class GenreCount(Doc):
    genre: str | None = Field(description='A genre, or "uncertain" (library model).')
    tracks: int
    mean_confidence: float


class Disagreement(Doc):
    id: int
    path: str
    artist: str | None
    title: str | None
    tag: list[str] = Field(description="The tag's genres in the library's vocabulary.")
    raw_tag: list[str] | None = Field(description="The tag as written in the file.")
    suggestion: str = Field(description="The library model's genre.")
    confidence: float
    source: str


class Disagreements(Doc):
    """Empty lists (and no threshold or totals) until `sonic learn-genres` ran."""

    model_version: int | None
    threshold: float | None = None
    mistagged: list[Disagreement] = Field(description="Tags the model confidently contradicts.")
    untagged: list[Disagreement] = Field(description="Confident suggestions for untagged tracks.")
    total_mistagged: int | None = None
    total_untagged: int | None = None


def router(state: ServiceState) -> APIRouter:
    api = APIRouter(tags=["tracks"], default_response_class=SafeJSONResponse)

    @api.get("/genres/disagree", response_model=Disagreements)
    async def genre_disagreements(limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> Response:
        """Tracks whose genre tag the library model confidently contradicts, and confident
        suggestions for untagged ones (empty lists until `sonic learn-genres` ran)."""
        cat = await state.current()
        return SafeJSONResponse(await quick_read(disagreements, cat, limit))

    @api.get("/genres", response_model=list[GenreCount])
    async def genres() -> Response:
        """Tracks per predicted genre, most common first."""
        cat = await state.current()
        return SafeJSONResponse(await quick_read(queries.genre_counts, cat))

    return api
