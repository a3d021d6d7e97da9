"""``/media-server/``: sound-alikes and sonic paths for servers that keep their own library.

A media server (Navidrome's ``sonic_similarity`` plugin capability, say) sends a
song as the fields it knows (``id``, ``mbid``, ``isrc``, ``artist``, ``title``,
``album``, ``duration``: any of them), the catalog finds its track
(:mod:`catalog.song_match`, with a match confidence), and answers in the same
fields, so the server maps each answer back to its own song by MBID, ISRC or tags.
These routes are under ``SONIC_API_TOKEN`` like the rest of the REST API.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from catalog import sonic_path as sp
from catalog.song_match import SongFields, find_song, rows_by_id
from ui.routes.schemas import errors
from ui.safe_json import SafeJSONResponse
from ui.state import ServiceState


class Song(BaseModel):
    id: str | None = Field(None, max_length=64, description="The catalog's id (tr-N or N).")
    mbid: str | None = Field(None, max_length=64, description="MusicBrainz recording id.")
    isrc: str | None = Field(None, max_length=32)
    artist: str | None = Field(None, max_length=500)
    title: str | None = Field(None, max_length=500)
    album: str | None = Field(None, max_length=500)
    duration: float | None = Field(None, ge=0, le=1e6, description="Seconds.")


class SimilarRequest(Song):
    count: int = Field(10, ge=1, le=500)


class PathRequest(BaseModel):
    start: Song
    end: Song
    count: int = Field(25, ge=2, le=200)


class SongAnswer(BaseModel):
    """A catalog track in the fields a media server matches on."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="tr-N.")
    track_id: int
    mbid: str | None
    isrc: str | None
    artist: str | None
    title: str | None
    album: str | None
    duration: float | None = Field(description="Seconds.")


class SongMatch(SongAnswer):
    confidence: float = Field(description="How sure the match is, 0..1.")
    matched_on: str = Field(description="What matched: id, mbid, isrc or tags.")


class SoundAlike(SongAnswer):
    similarity: float = Field(description="0..1.")


class SimilarAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    song: SongMatch
    similar: list[SoundAlike]


class PathAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: SongMatch
    end: SongMatch
    path: list[SoundAlike]


def router(state: ServiceState) -> APIRouter:
    """The ``/media-server/`` routes."""
    api = APIRouter(tags=["media servers"], default_response_class=SafeJSONResponse)

    def match(song: Song, which: str = "song") -> tuple[dict, dict]:
        fields = SongFields(**{k: getattr(song, k) for k in SongFields.__dataclass_fields__})
        found = find_song(state.fresh(), fields)
        if found is None:
            raise HTTPException(404, f"no track in the catalog matches the {which} given")
        row, confidence, on = found
        return row, {**row, "confidence": confidence, "matched_on": on}

    def answers(pairs: list[tuple[int, float]]) -> list[dict]:
        rows = rows_by_id(state.catalog, [i for i, _ in pairs])
        return [{**rows[i], "similarity": round(s, 6)} for i, s in pairs if i in rows]

    @api.post("/media-server/similar", response_model=SimilarAnswer, responses=errors(404, 409))
    def similar(body: SimilarRequest) -> Response:
        """The song's match and its ``count`` sound-alikes (similarity in [0, 1])."""
        row, matched = match(body)
        try:
            pairs = sp.sonic_similar(state.fresh().index(), row["track_id"], body.count)
        except LookupError as exc:
            raise HTTPException(409, str(exc)) from None
        return SafeJSONResponse({"song": matched, "similar": answers(pairs)})

    @api.post("/media-server/path", response_model=PathAnswer, responses=errors(404, 409))
    def path(body: PathRequest) -> Response:
        """A sonic path from ``start`` to ``end`` (both matched), ``count`` songs."""
        start, start_match = match(body.start, "start")
        end, end_match = match(body.end, "end")
        try:
            pairs = sp.sonic_path(
                state.fresh().index(), start["track_id"], end["track_id"], body.count
            )
        except LookupError as exc:
            raise HTTPException(409, str(exc)) from None
        return SafeJSONResponse({"start": start_match, "end": end_match, "path": answers(pairs)})

    return api
