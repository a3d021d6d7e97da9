"""``/media-server/``: sound-alikes and sonic paths for servers that keep their own library.

A media server (Navidrome's ``sonic_similarity`` plugin capability, say) sends a
song as the fields it knows (``id``, ``mbid``, ``isrc``, ``artist``, ``title``,
``album``, ``duration``: any of them), the catalog finds its track
(:mod:`catalog.song_match`, with a match confidence), and answers in the same
fields, so the server maps each answer back to its own song by MBID, ISRC or tags.
These routes are under ``SONIC_API_TOKEN`` like the rest of the REST API.
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from catalog import sonic_path as sp
from catalog.song_match import SongFields, find_song, rows_by_id
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


def mount(app: FastAPI, state: ServiceState) -> None:
    """Add the ``/media-server/`` routes to ``app``."""

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

    @app.post("/media-server/similar", tags=["media servers"])
    def similar(body: SimilarRequest) -> dict:
        """The song's match and its ``count`` sound-alikes (similarity in [0, 1])."""
        row, matched = match(body)
        try:
            pairs = sp.sonic_similar(state.fresh().index(), row["track_id"], body.count)
        except LookupError as exc:
            raise HTTPException(409, str(exc)) from None
        return {"song": matched, "similar": answers(pairs)}

    @app.post("/media-server/path", tags=["media servers"])
    def path(body: PathRequest) -> dict:
        """A sonic path from ``start`` to ``end`` (both matched), ``count`` songs."""
        start, start_match = match(body.start, "start")
        end, end_match = match(body.end, "end")
        try:
            pairs = sp.sonic_path(
                state.fresh().index(), start["track_id"], end["track_id"], body.count
            )
        except LookupError as exc:
            raise HTTPException(409, str(exc)) from None
        return {"start": start_match, "end": end_match, "path": answers(pairs)}
