"""Sound-alikes: of a catalogued track (the hottest route), of an uploaded clip, and why.

``GET /tracks/{id}/similar`` runs on the event loop, not in a worker thread: one
query is about a millisecond of CPU (an in-memory search and a WAL read that never
waits for a writer), less than the two thread wake-ups a worker costs on a busy
machine. Index reloads happen in the background (``fresh(block=False)``); a filtered
search that widens to much of the catalog moves its SQL to a thread
(``quick_read``). It answers with its JSON already rendered: its model documents
the answer, FastAPI does not validate it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Query, UploadFile
from fastapi.responses import Response
from pydantic import Field

from catalog import queries
from catalog.why_similar import why_similar
from embeddings.inference import AGGREGATIONS
from ui.guard import TooLarge
from ui.optional import FeatureUnavailable
from ui.routes.links import with_links
from ui.routes.params import TrackId
from ui.routes.quick import quick_read
from ui.routes.schemas import BandFocus, Doc, Neighbour, Segment, TrackStatusName, errors
from ui.safe_json import SafeJSONResponse
from ui.state import ServiceState


class Similar(Doc):
    track_id: int = Field(description="The seed track.")
    neighbours: list[Neighbour] = Field(description="Best first.")


class GenreShare(Doc):
    genre: str
    probability: float


class ClipAnalysis(Doc):
    """What the model heard in an uploaded clip (nothing is stored)."""

    model_id: str
    model_trained: bool
    aggregation: str
    duration_s: float
    truncated: bool = Field(description="Longer than the limit: only its start was analysed.")
    genre: str
    confidence: float
    top_k: list[GenreShare]
    probabilities: dict[str, float]
    timeline: list[Segment]


class UploadSimilar(Doc):
    analysis: ClipAnalysis
    neighbours: list[Neighbour]
    note: str | None = Field(description="Why there are no neighbours, when there are none.")


class ShortTrack(Doc):
    id: int
    path: str
    title: str | None
    artist: str | None
    album: str | None
    track_number: int | None
    duration_s: float | None
    status: TrackStatusName
    genre: str | None
    confidence: float | None


class SharedGenre(Doc):
    genre: str
    probability_a: float
    probability_b: float
    shared: float = Field(description="The smaller of the two: what they have in common.")


class TimelineShare(Doc):
    track: float | None = Field(description="Share of its segments in the shared genres.")
    other: float | None


class FocusPair(Doc):
    a: BandFocus | None
    b: BandFocus | None
    distance: float | None = Field(description="Half the L1 distance of the two profiles.")


class Moment(Doc):
    a_start_s: float
    b_start_s: float
    cosine: float


class Attributions(Doc):
    a: int
    b: int
    cosine: float | None
    band_focus: FocusPair
    closest_moments: list[Moment]
    sentence: str


class WhySimilar(Doc):
    """Why two tracks are close: the same answer as ``sonic explain`` and the UI."""

    a: int
    b: int
    track: ShortTrack
    other: ShortTrack
    score: float | None = Field(description="Cosine of the two embeddings (also `cosine`).")
    cosine: float | None
    genre_overlap: float = Field(description="Overlap of the two genre distributions, 0..1.")
    shared_genres: list[SharedGenre]
    timeline_share: TimelineShare
    band_focus: FocusPair
    closest_moments: list[Moment] = Field(description="The segments closest to each other.")
    sentence: str
    summary: str = Field(description="The sentence again (the older name).")
    attributions: Attributions | None
    attributions_note: str | None = Field(None, description="Why there are no attributions.")


def router(state: ServiceState) -> APIRouter:
    api = APIRouter(tags=["similar"], default_response_class=SafeJSONResponse)

    @api.get("/tracks/{track_id}/similar", response_model=Similar, responses=errors(404, 409))
    async def similar(
        track_id: TrackId,
        k: Annotated[int, Query(ge=1, le=100)] = 10,
        genre: str | None = None,
        exclude_same_album: bool = False,
    ) -> Response:
        """Nearest tracks by cosine similarity of embeddings, best first."""
        try:
            cat = state.fresh(block=False)
            rows = await quick_read(queries.similar, cat, track_id, k, genre, exclude_same_album)
        except queries.TrackNotFound:
            raise
        except LookupError as exc:
            raise HTTPException(409, str(exc)) from None
        return SafeJSONResponse({"track_id": track_id, "neighbours": [with_links(r) for r in rows]})

    @api.post("/similar", response_model=UploadSimilar, responses=errors(413, 422))
    def similar_to_upload(
        file: Annotated[UploadFile, File(description="An audio clip (MP3, WAV, FLAC, ...).")],
        k: Annotated[int, Query(ge=1, le=100)] = 10,
        aggregation: Annotated[str, Query(pattern="^(" + "|".join(AGGREGATIONS) + ")$")] = "mean",
        top_k: Annotated[int, Query(ge=1, le=50)] = 3,
        genre: str | None = None,
    ) -> Response:
        """Analyse an uploaded clip on the fly (nothing is stored) and find its neighbours."""
        data = file.file.read(state.settings.max_upload_bytes + 1)
        if len(data) > state.settings.max_upload_bytes:
            raise TooLarge(state.settings.max_upload_bytes)
        analysis = state.analyser.analyse_bytes(data, file.filename or "upload", aggregation)
        ok, note = state.comparable()
        neighbours = []
        if ok:
            rows = queries.similar_to_vector(state.fresh(), analysis.embedding, k, genre=genre)
            neighbours = [with_links(r) for r in rows]
        return SafeJSONResponse(
            {"analysis": analysis.to_dict(top_k), "neighbours": neighbours, "note": note}
        )

    @api.get(
        "/tracks/{track_id}/explain-similar/{other_id}",
        response_model=WhySimilar,
        responses=errors(404),
    )
    def explain_similar(track_id: TrackId, other_id: TrackId) -> Response:
        """Why two tracks are similar: score, shared genres, attributions when available."""
        cat = state.fresh()
        data = why_similar(cat, track_id, other_id)
        try:
            data["attributions"] = state.features.explanations.explain_pair(cat, track_id, other_id)
        except FeatureUnavailable as exc:
            data["attributions"] = None
            data["attributions_note"] = exc.message
        return SafeJSONResponse(data)

    return api
