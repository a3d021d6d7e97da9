"""The REST API (FastAPI) with the Gradio UI mounted at ``/ui``.

Thin: each route parses its arguments, asks a function of ``catalog``, ``ingest``
or ``ui.optional`` and returns its JSON. Security defaults: the CLI binds to
127.0.0.1; audio is served only from the library roots, heatmaps and stems only
from the data directory, ids are integers and stem names a closed alphabet, so no
request names a file; request bodies are limited (413); a Host header the service
was not told of is refused (400, DNS rebinding); with ``SONIC_API_TOKEN`` set,
every route (the UI, the docs and ``/health`` included) requires the token, and
playlists carry per-track signed, expiring links instead (``ui.signed_links``).
The OpenSubsonic API under ``/rest/`` (``ui.subsonic``) is the exception: Subsonic
clients cannot send the token, so its users log in there with their own accounts.
"""

from __future__ import annotations

import hmac
import mimetypes
import os
import re
from collections.abc import Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs

import anyio
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.utils import is_body_allowed_for_status_code
from pydantic import BeforeValidator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

try:  # a dependency of Gradio, so present wherever the UI is; the stdlib encoder otherwise
    import orjson
except ImportError:  # pragma: no cover
    orjson = None

from catalog import queries
from catalog.paths import displayable
from catalog.playlists import m3u_path, radio, to_m3u
from catalog.projection import METHODS, library_map
from catalog.why_similar import why_similar
from embeddings.inference import AGGREGATIONS
from ingest.busy_signal import BusyBeacon
from ingest.clip import ClipError
from ui.activity import ActivitySignal
from ui.docs_assets import add_offline_docs
from ui.media_server import mount as mount_media_server
from ui.optional import FeatureUnavailable, valid_stem_name
from ui.signed_links import (
    DEFAULT_LIFETIME_S,
    MAX_LIFETIME_S,
    link_key,
    signed_query,
    signed_track,
)
from ui.state import (
    ALLOWED_HOSTS_ENV,
    LOOPBACK_HOSTS,
    TOKEN_ENV,
    ServiceState,
    Settings,
    allowed_hosts_from_env,
)
from ui.subsonic import mount as mount_subsonic

TOKEN_COOKIE = "sonic_token"
SUBSONIC_PREFIX = "/rest/"  # Subsonic clients authenticate per request (ui.subsonic.auth)
UI_PATH = "/ui"
AUDIO_TYPES = {
    ".mp3": "audio/mpeg", ".flac": "audio/flac", ".wav": "audio/wav", ".ogg": "audio/ogg",
    ".oga": "audio/ogg", ".opus": "audio/ogg", ".m4a": "audio/mp4", ".aac": "audio/aac",
    ".aif": "audio/aiff", ".aiff": "audio/aiff", ".wma": "audio/x-ms-wma",
}  # fmt: skip

MAX_TRACK_ID = 2**62
CANONICAL_ID = re.compile(r"[1-9][0-9]*")


def _canonical_id(value: object) -> object:
    """Refuse ids that int() would bend into another: "+1", "01", "1.0", " 1", "1_0"."""
    if isinstance(value, str) and not CANONICAL_ID.fullmatch(value):
        raise ValueError(
            "a track id is a positive whole number written plainly (1, 2, 42): "
            "no sign, spaces, leading zeros, decimals or separators"
        )
    return value


# One strict definition for every id in a path or query: an id names one track, and
# a second spelling of it is a way around caches, logs and link signatures.
TrackId = Annotated[
    int, BeforeValidator(_canonical_id), PathParam(ge=1, le=MAX_TRACK_ID, description="Track id.")
]
SeedId = Annotated[
    int,
    BeforeValidator(_canonical_id),
    Query(ge=1, le=MAX_TRACK_ID, description="Seed track id."),
]


class SafeJSONResponse(JSONResponse):
    """JSON that shows any text holding an undecodable file name (``\\xNN`` escapes).

    Catalog paths are the real names, which may be non-UTF-8 bytes held as lone
    surrogates; UTF-8 JSON refuses those (a 500). Every JSON answer of the app goes
    through this class (its default response class, and the error handlers), so no
    route has to remember which fields hold paths; only a failing render pays for
    the walk.

    orjson renders when installed: a track's details (hundreds of floats in its
    timeline) took ~1 ms with the stdlib encoder, ~0.07 ms with it. Same JSON values;
    only number spellings differ (``1e16``, not ``1e+16``), and NaN becomes null
    where the stdlib encoder failed the request. Whatever orjson refuses (lone
    surrogates, integers beyond 64 bits) takes the stdlib path as before.
    """

    def render(self, content: object) -> bytes:
        if orjson is not None:
            try:
                return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
            except TypeError:  # orjson.JSONEncodeError
                pass
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return super().render(displayable(content))


# A catalog read runs on the event loop while it takes less than this; past it, SQLite
# stops it and it runs again in a worker thread (``queries.time_limit``).
QUICK_READ_S = 0.005


async def quick_read(fn: Callable[..., object], *args: object) -> object:
    """``fn(*args)`` on the event loop when its SQL is quick, else in a worker thread.

    A read of a few rows costs less than the hop to a worker thread, and in a
    thread, under load, it waits for the GIL after every SQLite step (up to the 5 ms
    switch interval each time): that, not the work, made the tail latency. But a scan
    (a genre or text filter, genre counts over 100k tracks: 0.1-0.6 s) must not stall
    every other request, so SQLite interrupts a read that passes ``QUICK_READ_S`` and
    it is redone in a thread. At most that much loop time is spent on a slow one.
    """
    try:
        with queries.time_limit(QUICK_READ_S):
            return fn(*args)
    except queries.ReadTooSlow:
        return await anyio.to_thread.run_sync(fn, *args)


# -- middleware: token and body size -------------------------------------------------------


class _TooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than the {limit} byte limit")


def host_name(header: str) -> str:
    """The name in a Host header, without port, brackets, case or a trailing dot."""
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:8000
        return header[1 : header.find("]")] if "]" in header else header
    name, _, port = header.rpartition(":")
    return (name if name and port.isdigit() else header).rstrip(".")


class Guard:
    """Pure ASGI middleware: the Host header, the API token (when set), the body limit.

    The Host must be one of ``allowed_hosts`` (``"*"``: any): a page on another
    site whose name an attacker re-points at 127.0.0.1 (DNS rebinding) still sends
    its own name, so it is refused before it reaches the token-less default service.
    The token is accepted as ``Authorization: Bearer``, an ``X-API-Token`` header,
    a ``token`` query parameter or the cookie that a query-token visit sets (so the
    browser UI keeps working after ``/ui?token=``). Without it, only a signed link
    (``ui.signed_links``) opens one track's audio.
    """

    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        max_body: int,
        before: Mapping[str, Callable[[], object]] | None = None,
        allowed_hosts: Iterable[str] = LOOPBACK_HOSTS,
    ) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.link_key = link_key(self.token) if self.token else None
        self.max_body = max_body
        hosts = {h.strip().strip("[]").lower().rstrip(".") for h in allowed_hosts}
        self.any_host = "*" in hosts
        self.allowed_hosts = frozenset(hosts - {"*"})
        # path -> work to do (in a thread) before an admitted POST to it is handled
        self.before = dict(before or {})

    def _presented(self, scope: Scope) -> tuple[bytes | None, bool]:
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", b"")
        if auth[:7].lower() == b"bearer ":
            return auth[7:].strip(), False
        if "x-api-token" in headers:
            return headers["x-api-token"].strip(), False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query:
            return query["token"][0].encode("latin-1"), True
        cookie = SimpleCookie(headers.get("cookie", b"").decode("latin-1"))
        if TOKEN_COOKIE in cookie:
            return cookie[TOKEN_COOKIE].value.encode("latin-1"), False
        return None, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self._wrong_host(scope)
        if refusal is not None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await SafeJSONResponse({"detail": refusal}, status_code=400)(scope, receive, send)
            return
        from_query = False
        if self.token is not None and not scope.get("path", "").startswith(SUBSONIC_PREFIX):
            presented, from_query = self._presented(scope)
            if presented is not None and hmac.compare_digest(presented, self.token):
                pass
            elif self._signed_link(scope):
                from_query = False  # a playlist link opens one track, and sets no cookie
            else:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                response = SafeJSONResponse(
                    {"detail": "missing or invalid API token"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        if scope["type"] == "http":
            headers = dict(scope.get("headers", []))
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                response = SafeJSONResponse(
                    {"detail": f"request body larger than the {self.max_body} byte limit"},
                    status_code=413,
                )
                await response(scope, receive, send)
                return
            receive = self._counting(receive)
            hook = self.before.get(scope.get("path", ""))
            if hook is not None and scope.get("method") == "POST":
                await anyio.to_thread.run_sync(hook)
        if from_query:
            send = self._setting_cookie(send)
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except _TooLarge as exc:
            if started:
                raise
            await SafeJSONResponse({"detail": exc.detail}, status_code=413)(scope, receive, send)

    def _signed_link(self, scope: Scope) -> bool:
        """A GET of one track's audio with that track's unexpired signature (M3U links)."""
        if self.link_key is None or scope["type"] != "http":
            return False
        if scope.get("method") not in ("GET", "HEAD"):
            return False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        return signed_track(scope.get("path", ""), query, self.link_key)

    def _wrong_host(self, scope: Scope) -> str | None:
        """Why the request's Host header is refused, or None when it is allowed."""
        if self.any_host:
            return None
        values = [v for k, v in scope.get("headers", []) if k.lower() == b"host"]
        if len(values) != 1:
            return "a request needs exactly one Host header"
        name = host_name(values[0].decode("latin-1"))
        if name in self.allowed_hosts:
            return None
        return (
            f"this service does not answer to the host name {name[:100]!r}: if it is yours, "
            f"start `sonic serve --allowed-host {name[:100]}` (or add it to {ALLOWED_HOSTS_ENV})"
        )

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge(self.max_body)
            return message

        return counted

    def _setting_cookie(self, send: Send) -> Send:
        token = self.token.decode("latin-1")

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"set-cookie", cookie.encode())]
            await send(message)

        return with_cookie


# -- the app ------------------------------------------------------------------------------


def create_app(
    data_dir: Path,
    *,
    settings: Settings | None = None,
    state: ServiceState | None = None,
    mount_ui: bool = True,
) -> FastAPI:
    """The FastAPI app on the catalog in ``data_dir`` (Gradio UI at ``/ui``)."""
    if state is None:
        settings = settings or Settings(data_dir=Path(data_dir))
        if settings.token is None and os.environ.get(TOKEN_ENV):
            settings.token = os.environ[TOKEN_ENV]
        settings.allowed_hosts = [*settings.allowed_hosts, *allowed_hosts_from_env()]
        state = ServiceState(settings)
    settings = state.settings
    beacon = BusyBeacon(settings.data_dir)  # ingests here yield while requests come

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        # Load the index (and start the approximate one) before accepting requests.
        await anyio.to_thread.run_sync(state.fresh)
        yield
        state.close()
        beacon.close()

    app = FastAPI(
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
        title="Sonic Catalog",
        summary="Sound-alike search, genre browsing and analysis of a music library.",
        version="0.1.0",
        docs_url=None,  # served from local assets below: /docs works without internet
        redoc_url=None,
    )
    add_offline_docs(app)
    app.state.sonic = state
    _add_errors(app)
    _add_routes(app, state)
    mount_subsonic(app, state)  # /rest/: OpenSubsonic, with its own users
    mount_media_server(app, state)  # /media-server/: songs found by MBID, ISRC, tags
    before: dict[str, Callable[[], object]] = {}
    if mount_ui:
        import gradio as gr

        from ui.web import CSS, Uploads, build_ui, head

        uploads = Uploads(settings.upload_cache_bytes)
        # Make room before each upload, so the upload folder stays under the cap.
        before[UI_PATH + "/gradio_api/upload"] = uploads.trim
        gr.mount_gradio_app(
            app,
            build_ui(state, uploads),
            path=UI_PATH,
            ssr_mode=False,
            max_file_size=settings.max_upload_bytes,
            blocked_paths=[str(settings.data_dir)],  # Gradio never serves the catalog's files
            footer_links=[],
            css=CSS,
            head=head(),  # the player and navigation script (ui/web/player.js), inline
        )
    app.add_middleware(
        Guard,
        token=settings.token,
        max_body=settings.max_upload_bytes,
        before=before,
        allowed_hosts=[*LOOPBACK_HOSTS, *settings.allowed_hosts],
    )
    app.add_middleware(ActivitySignal, beacon=beacon)  # outermost: refused requests count too

    return app


def _add_errors(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI's own handler, but a detail quoting a file name cannot fail to render.
        headers = getattr(exc, "headers", None)
        if not is_body_allowed_for_status_code(exc.status_code):
            return Response(status_code=exc.status_code, headers=headers)
        return SafeJSONResponse({"detail": exc.detail}, exc.status_code, headers)

    @app.exception_handler(queries.TrackNotFound)
    async def _not_found(_: Request, exc: queries.TrackNotFound) -> SafeJSONResponse:
        return SafeJSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(FeatureUnavailable)
    async def _unavailable(_: Request, exc: FeatureUnavailable) -> SafeJSONResponse:
        return SafeJSONResponse({"detail": exc.message}, status_code=exc.status_code)

    @app.exception_handler(ClipError)
    async def _bad_clip(_: Request, exc: ClipError) -> SafeJSONResponse:
        return SafeJSONResponse({"detail": f"cannot analyse the upload: {exc}"}, status_code=422)


def _audio_type(path: Path) -> str:
    return (
        AUDIO_TYPES.get(path.suffix.lower())
        or mimetypes.guess_type(path.name)[0]
        or ("application/octet-stream")
    )


def _add_routes(app: FastAPI, state: ServiceState) -> None:  # noqa: C901 (one route each)
    def catalog():
        return state.fresh()

    def details(track_id: int) -> dict:
        return queries.track_details(catalog(), track_id)

    def exists(track_id: int) -> None:
        queries.track_details(catalog(), track_id)  # raises TrackNotFound -> 404

    def links(track: dict) -> dict:
        return {
            **track,
            "url": f"/tracks/{track['id']}",
            "audio_url": f"/tracks/{track['id']}/audio",
        }

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @app.get("/health", tags=["service"])
    def health() -> dict:
        """Liveness plus what this process serves: tracks, index, device, model."""
        cat = catalog()
        index = cat.index()
        return {
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

    @app.get("/stats", tags=["service"])
    def stats() -> dict:
        """Catalog statistics, the running device and the models."""
        return state.summary()

    # The hot read routes run on the event loop (see ``quick_read``) and return their
    # JSON themselves: ``response_model=dict`` keeps the documented schema while
    # skipping FastAPI's validation and re-encoding of an untyped dict.

    @app.get("/tracks", tags=["tracks"], response_model=dict)
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
        page["tracks"] = [links(t) for t in page["tracks"]]
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

    @app.get("/tracks/{track_id}", tags=["tracks"], response_model=dict)
    async def track(track_id: TrackId) -> Response:
        """Tags, probabilities, the per-segment timeline, explanations and stems."""
        cat = await state.current()
        return SafeJSONResponse(await quick_read(track_view, cat, track_id))

    @app.get("/tracks/{track_id}/similar", tags=["similar"])
    async def similar(
        track_id: TrackId,
        k: Annotated[int, Query(ge=1, le=100)] = 10,
        genre: str | None = None,
        exclude_same_album: bool = False,
    ) -> SafeJSONResponse:
        """Nearest tracks by cosine similarity of embeddings, best first."""
        # On the event loop, not in a worker thread: one query is about a millisecond
        # of CPU (an in-memory search and a WAL read that never waits for a writer),
        # less than the two thread wake-ups a worker costs on a busy machine. Index
        # reloads happen in the background (``fresh(block=False)``). A filtered search
        # that widens to much of the catalog moves its SQL to a thread (``quick_read``).
        try:
            cat = state.fresh(block=False)
            rows = await quick_read(queries.similar, cat, track_id, k, genre, exclude_same_album)
        except queries.TrackNotFound:
            raise
        except LookupError as exc:
            raise HTTPException(409, str(exc)) from None
        # The hot path: plain JSON, no response-model validation of an untyped dict.
        return SafeJSONResponse({"track_id": track_id, "neighbours": [links(r) for r in rows]})

    @app.post("/similar", tags=["similar"])
    def similar_to_upload(
        file: Annotated[UploadFile, File(description="An audio clip (MP3, WAV, FLAC, ...).")],
        k: Annotated[int, Query(ge=1, le=100)] = 10,
        aggregation: Annotated[str, Query(pattern="^(" + "|".join(AGGREGATIONS) + ")$")] = "mean",
        top_k: Annotated[int, Query(ge=1, le=50)] = 3,
        genre: str | None = None,
    ) -> dict:
        """Analyse an uploaded clip on the fly (nothing is stored) and find its neighbours."""
        data = file.file.read(state.settings.max_upload_bytes + 1)
        if len(data) > state.settings.max_upload_bytes:
            raise _TooLarge(state.settings.max_upload_bytes)
        analysis = state.analyser.analyse_bytes(data, file.filename or "upload", aggregation)
        ok, note = state.comparable()
        neighbours = []
        if ok:
            rows = queries.similar_to_vector(catalog(), analysis.embedding, k, genre=genre)
            neighbours = [links(r) for r in rows]
        return {
            "analysis": analysis.to_dict(top_k),
            "neighbours": neighbours,
            "note": note,
        }

    @app.get("/tracks/{track_id}/explain-similar/{other_id}", tags=["similar"])
    def explain_similar(track_id: TrackId, other_id: TrackId) -> dict:
        """Why two tracks are similar: score, shared genres, attributions when available."""
        cat = catalog()
        data = why_similar(cat, track_id, other_id)
        try:
            data["attributions"] = state.features.explanations.explain_pair(cat, track_id, other_id)
        except FeatureUnavailable as exc:
            data["attributions"] = None
            data["attributions_note"] = exc.message
        return data

    @app.get("/genres/disagree", tags=["tracks"], response_model=dict)
    async def genre_disagreements(limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> Response:
        """Tracks whose genre tag the library model confidently contradicts, and confident
        suggestions for untagged ones (empty lists until `sonic learn-genres` ran)."""
        from catalog.genre_views import disagreements

        cat = await state.current()
        return SafeJSONResponse(await quick_read(disagreements, cat, limit))

    @app.get("/genres", tags=["tracks"], response_model=list[dict])
    async def genres() -> Response:
        """Tracks per predicted genre, most common first."""
        cat = await state.current()
        return SafeJSONResponse(await quick_read(queries.genre_counts, cat))

    @app.get("/tracks/{track_id}/audio", tags=["files"])
    def audio(track_id: TrackId) -> FileResponse:
        """The track's file (HTTP range requests supported); only from library roots."""
        path = Path(details(track_id)["path"])
        if not path.is_file():
            raise HTTPException(404, f"track {track_id}'s file is missing")
        if not state.may_serve_audio(path):
            raise HTTPException(403, "this file is outside the library roots")
        return FileResponse(path, media_type=_audio_type(path), filename=None)

    @app.get("/tracks/{track_id}/heatmap.png", tags=["files"])
    def heatmap(track_id: TrackId) -> FileResponse:
        """The Grad-CAM heatmap of the track's prediction, when one was computed."""
        cat = catalog()
        path = state.features.explanations.heatmap(cat, details(track_id))
        if path is None:
            reason = (
                "" if state.features.explanations.available
                else f": {state.features.explanations.ABSENT}"
            )  # fmt: skip
            raise HTTPException(404, f"no heatmap for track {track_id}{reason}")
        return FileResponse(path, media_type="image/png")

    @app.post("/tracks/{track_id}/stems", tags=["stems"], status_code=202)
    def separate(track_id: TrackId) -> dict:
        """Start separating the track into stems (a background job; cached stems return at once)."""
        exists(track_id)
        stems = state.features.stems
        if not stems.available:
            raise FeatureUnavailable(stems.why_not or stems.ABSENT)

        def work(set_progress) -> dict:
            def progress(done: float, total: float | None) -> None:
                set_progress(done / total if total else None)

            result = stems.separate(state.catalog, track_id, progress)
            result["urls"] = {
                name: f"/tracks/{track_id}/stems/{name}" for name in result.get("stems", {})
            }
            return result

        job = state.jobs.submit("stems", f"stems:{track_id}", work)
        return {"job_id": job.id, "status": job.status, "status_url": f"/jobs/{job.id}"}

    @app.get("/jobs/{job_id}", tags=["stems"])
    async def job(job_id: Annotated[str, PathParam(pattern="^[0-9a-f]{32}$")]) -> dict:
        """A background job's status, progress and result."""
        found = state.jobs.get(job_id)
        if found is None:
            raise HTTPException(404, f"no job {job_id}")
        return found.to_dict()

    @app.post("/jobs/{job_id}/cancel", tags=["stems"])
    async def cancel_job(job_id: Annotated[str, PathParam(pattern="^[0-9a-f]{32}$")]) -> dict:
        """Ask a queued or running job to stop; it ends as "cancelled" at its next step."""
        found = state.jobs.cancel(job_id)
        if found is None:
            raise HTTPException(404, f"no job {job_id}")
        return found.to_dict()

    @app.get("/tracks/{track_id}/stems/{stem}", tags=["stems"])
    def stem(track_id: TrackId, stem: str) -> FileResponse:
        """One cached stem of the track (HTTP range requests supported)."""
        if not valid_stem_name(stem):
            raise HTTPException(404, f"no stem named {stem!r}")
        cat = catalog()
        cached = state.features.stems.cached(cat, details(track_id))
        path = cached.get(stem)
        if path is None or not path.is_file():
            if not cached and not state.features.stems.available:
                raise HTTPException(
                    404, f"no stems for track {track_id}: {state.features.stems.why_not}"
                )
            raise HTTPException(404, f"no cached stem {stem!r} for track {track_id}")
        return FileResponse(path, media_type=_audio_type(path))

    def _radio(seed: int, n: int) -> dict:
        try:
            data = radio(catalog(), seed, n)
        except queries.TrackNotFound:
            raise
        except LookupError as exc:
            raise HTTPException(409, str(exc)) from None
        data["tracks"] = [links(t) for t in data["tracks"]]
        return data

    @app.get("/playlists/radio", tags=["playlists"])
    def radio_json(
        seed: SeedId,
        n: Annotated[int, Query(ge=1, le=500)] = 20,
    ) -> dict:
        """A sound-alike playlist from a seed track; no artist or album twice in a row."""
        return _radio(seed, n)

    @app.get("/playlists/radio.m3u", tags=["playlists"], response_class=PlainTextResponse)
    def radio_m3u(
        request: Request,
        seed: SeedId,
        n: Annotated[int, Query(ge=1, le=500)] = 20,
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
        data = _radio(seed, n)
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

    @app.get("/map", tags=["tracks"])
    def library_map_route(
        method: Annotated[str, Query(pattern="^(" + "|".join(METHODS) + ")$")] = "pca",
        max_points: Annotated[int, Query(ge=10, le=100_000)] = 20_000,
    ) -> dict:
        """Every indexed track projected to 2-D (PCA, or UMAP when installed)."""
        try:
            return library_map(catalog(), method, max_points)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
