"""``/tracks``: a page of the catalog, and everything it holds for one track.

Both are hot read routes: on the event loop (``quick_read``), answering with their
JSON already rendered (orjson), so FastAPI neither validates nor re-encodes it; the
models below only document it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import Field

from catalog import queries
from ui.routes.links import with_links
from ui.routes.params import MAX_TRACK_ID, TrackId
from ui.routes.quick import quick_read
from ui.routes.schemas import (
    BandFocus,
    Doc,
    GenreViews,
    ListedTrack,
    Segment,
    TrackSummary,
    errors,
)
from ui.safe_json import SafeJSONResponse
from ui.state import ServiceState


class TrackPage(Doc):
    total: int = Field(description="Tracks matching the filters, on every page.")
    limit: int
    offset: int
    genre_model: Literal["library", "shipped"] = Field(
        description="Whose genres `genre` filters by: the library model's, or the shipped head's."
    )
    tracks: list[ListedTrack]


class Explanation(Doc):
    """The stored Grad-CAM explanation of the track's prediction."""

    genre: str | None = Field(description="The genre the heatmap explains.")
    heatmap: str | None = Field(description="The PNG in the data directory, when present.")
    window_s: list[float | None] = Field(description="[start, end] of the explained window.")
    band_focus: BandFocus
    sentence: str


class Artefacts(Doc):
    audio: str = Field(description="The audio file's path.")
    heatmap: str | None
    stems: dict[str, str] = Field(description="Stem name -> file of the newest complete set.")


class TrackDetails(TrackSummary):
    """Everything the catalog holds for one track, with the URLs of its files."""

    size: int | None
    mtime_ns: int | None
    content_hash: str | None
    format: str | None
    sample_rate: int | None
    channels: int | None
    model_id: str | None = Field(description="The embedding model that analysed it.")
    n_segments: int | None
    analysed_at: str | None = Field(description="ISO 8601.")
    added_at: str | None = Field(description="ISO 8601.")
    in_index: bool = Field(description="Whether its embedding is searchable.")
    probabilities: dict[str, float] = Field(description="Genre -> probability, highest first.")
    timeline: list[Segment]
    explanation: Explanation | None
    genre_views: GenreViews | None
    artefacts: Artefacts
    audio_url: str
    heatmap_url: str | None
    band_focus: str | None = Field(description="The sentence naming the bands that mattered.")
    explanations_available: bool
    stems: dict[str, str] = Field(description="Stem name -> URL of a cached stem.")
    stems_available: bool
    explanations_note: str | None = Field(None, description="Only when explanations are absent.")
    stems_note: str | None = Field(None, description="Only when stem separation is absent.")


def router(state: ServiceState) -> APIRouter:
    api = APIRouter(tags=["tracks"], default_response_class=SafeJSONResponse)

    @api.get("/tracks", response_model=TrackPage)
    async def tracks(
        genre: str | None = None,
        artist: str | None = None,
        album: str | None = None,
        q: Annotated[str | None, Query(description="Text in title, artist or album.")] = None,
        status: Annotated[str | None, Query(pattern="^(ok|failed|missing)$")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_TRACK_ID)] = 0,
    ) -> Response:
        """A page of tracks; within a genre, most confident first."""
        cat = await state.current()
        page = await quick_read(queries.browse, cat, genre, status, artist, album, q, limit, offset)
        page["tracks"] = [with_links(t) for t in page["tracks"]]
        return SafeJSONResponse(page)

    def track_view(cat, track_id: int) -> dict:
        data = queries.track_details(cat, track_id)
        explanations, stems = state.features.explanations, state.features.stems
        heatmap = explanations.heatmap(cat, data)
        cached = stems.cached(cat, data)
        data.update(
            {
                "audio_url": f"/tracks/{track_id}/audio",
                "heatmap_url": f"/tracks/{track_id}/heatmap.png" if heatmap else None,
                "band_focus": explanations.band_focus(data),
                "explanations_available": explanations.available,
                "stems": {name: f"/tracks/{track_id}/stems/{name}" for name in cached},
                "stems_available": stems.available,
            }
        )
        if not explanations.available:
            data["explanations_note"] = explanations.ABSENT
        if not stems.available:
            data["stems_note"] = stems.why_not
        return data

    @api.get("/tracks/{track_id}", response_model=TrackDetails, responses=errors(404))
    async def track(track_id: TrackId) -> Response:
        """Tags, probabilities, the per-segment timeline, explanations and stems."""
        cat = await state.current()
        return SafeJSONResponse(await quick_read(track_view, cat, track_id))

    return api
