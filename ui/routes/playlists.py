"""``/playlists/radio``: a sound-alike playlist from a seed, as JSON or extended M3U.

With a token set, each M3U link is signed for its one track and expires
(``ui.signed_links``); the token itself never appears in the playlist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import Field

from catalog import queries
from catalog.playlists import m3u_path, radio, to_m3u
from ui.routes.links import with_links
from ui.routes.params import SeedId
from ui.routes.schemas import Doc, Neighbour, errors
from ui.safe_json import SafeJSONResponse
from ui.signed_links import DEFAULT_LIFETIME_S, MAX_LIFETIME_S, link_key, signed_query
from ui.state import ServiceState

Length = Annotated[int, Query(ge=1, le=500)]


class Radio(Doc):
    seed: int
    n: int = Field(description="The length asked for.")
    relaxed: int = Field(description="Times an artist or album had to follow itself.")
    tracks: list[Neighbour] = Field(description="The seed first (score 1).")


def router(state: ServiceState) -> APIRouter:
    api = APIRouter(tags=["playlists"], default_response_class=SafeJSONResponse)

    def playlist(seed: int, n: int) -> dict:
        try:
            data = radio(state.fresh(), seed, n)
        except queries.TrackNotFound:
            raise
        except LookupError as exc:
            raise HTTPException(409, str(exc)) from None
        data["tracks"] = [with_links(t) for t in data["tracks"]]
        return data

    @api.get("/playlists/radio", response_model=Radio, responses=errors(404, 409))
    def radio_json(seed: SeedId, n: Length = 20) -> Response:
        """A sound-alike playlist from a seed track; no artist or album twice in a row."""
        return SafeJSONResponse(playlist(seed, n))

    @api.get(
        "/playlists/radio.m3u",
        response_class=PlainTextResponse,
        responses={
            200: {"content": {"audio/x-mpegurl": {}}, "description": "Extended M3U."},
            **errors(404, 409),
        },
    )
    def radio_m3u(
        request: Request,
        seed: SeedId,
        n: Length = 20,
        paths: Annotated[bool, Query(description="File paths instead of URLs.")] = False,
        valid_hours: Annotated[
            int,
            Query(
                ge=1,
                le=MAX_LIFETIME_S // 3600,
                description="With a token set: how long each signed track link plays.",
            ),
        ] = DEFAULT_LIFETIME_S // 3600,
    ) -> PlainTextResponse:
        """The radio playlist as extended M3U (URLs to this service, or local paths).

        With a token set, each URL is signed for its one track and expires (after
        ``valid_hours``); the token itself never appears in the playlist.
        """
        data = playlist(seed, n)
        base = str(request.base_url).rstrip("/")
        key = link_key(state.settings.token) if state.settings.token else None

        def location(t: dict) -> str:
            if paths:
                return m3u_path(t["path"])
            url = f"{base}/tracks/{t['id']}/audio"
            return f"{url}?{signed_query(key, t['id'], valid_hours * 3600)}" if key else url

        return PlainTextResponse(
            to_m3u(data["tracks"], location),
            media_type="audio/x-mpegurl",
            headers={"Content-Disposition": f'inline; filename="radio-{seed}.m3u"'},
        )

    return api
