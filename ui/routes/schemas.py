"""The shapes several resources answer with: a track's summary, its genres, its timeline.

These models document the JSON (``/openapi.json``); the hot routes do not run them
over their answers (see ``ui.routes``), so ``tests/test_service.py`` validates real
answers against them instead: ``extra="forbid"`` makes a field that a route sends
but no model names fail that test, and the schema say so (``additionalProperties:
false``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TrackStatusName = Literal["ok", "failed", "missing"]


class Doc(BaseModel):
    """A documented answer: every field named, none other allowed."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Problem(Doc):
    """Every error answer (4xx, 5xx) of the REST API."""

    detail: str = Field(description="What was wrong, in words.")


def errors(*codes: int) -> dict[int | str, dict]:
    """``responses=`` for a route: the error statuses it answers with, and their shape."""
    said = {
        400: "A value the route cannot use.",
        401: "Missing or invalid API token (with SONIC_API_TOKEN set).",
        403: "The file lies outside the library roots.",
        404: "No such track, job, file or stem.",
        409: "The track exists but cannot answer this (no embedding in the index).",
        413: "The request body is larger than the limit.",
        422: "The upload cannot be analysed.",
        501: "The feature is not available in this build.",
    }
    return {code: {"model": Problem, "description": said[code]} for code in codes}


class TrackSummary(Doc):
    """The short form of a track, as listings show it."""

    id: int
    path: str = Field(
        description="The file as catalogued (undecodable bytes of a name shown as \\xNN)."
    )
    title: str | None
    artist: str | None
    album: str | None
    track_number: int | None
    duration_s: float | None
    status: TrackStatusName
    genre: str | None = Field(description="The shipped genre head's prediction.")
    confidence: float | None = Field(description="Its probability, 0..1.")
    error: str | None = Field(description="Why a failed track failed.")
    warning: str | None = Field(description="What was odd about an analysed one.")


class Linked(Doc):
    url: str = Field(description="This track's details: /tracks/{id}.")
    audio_url: str = Field(description="Its audio: /tracks/{id}/audio.")


class Neighbour(TrackSummary, Linked):
    """A track found by similarity, with its score and links."""

    score: float = Field(description="Cosine similarity of the embeddings (the seed: 1).")


class GenreAnswer(Doc):
    """One model's answer, shown as "uncertain" below its calibrated threshold."""

    genre: str = Field(description='The genre, or "uncertain" below the threshold.')
    predicted: str = Field(description="The genre the model predicted.")
    confidence: float
    threshold: float
    uncertain: bool


class LibraryAnswer(GenreAnswer):
    model_version: int = Field(description="The library genre model that answered.")
    source: str


class GtzanAnswer(GenreAnswer):
    canonical: str = Field(description="The prediction in the library's genre vocabulary.")


class FileTag(Doc):
    genres: list[str] = Field(description="The tag's genres in the library's vocabulary.")
    raw: list[str] = Field(description="The tag as written in the file.")


class GenreViews(Doc):
    """Three answers to "what genre is this?" (each None when it has none)."""

    tag: FileTag | None
    library: LibraryAnswer | None
    gtzan: GtzanAnswer | None


class ListedTrack(TrackSummary, Linked):
    genre_views: GenreViews | None


class Segment(Doc):
    """One analysis window of the timeline."""

    index: int
    start_s: float
    end_s: float
    genre: str | None
    confidence: float | None
    probabilities: dict[str, float] = Field(description="Genre -> probability.")


class BandFocus(Doc):
    """Which share of the heatmap's weight falls in each frequency band."""

    low: float
    mid: float
    high: float


class Features(Doc):
    explanations: bool
    stems: bool
