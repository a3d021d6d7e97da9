"""An OpenSubsonic server under ``/rest/`` over the catalog (``sonic serve``).

``mount(app, state)`` adds it to the service's FastAPI app. One route takes every
method (``/rest/ping`` and ``/rest/ping.view``, GET or form POST), reads the
parameters from the query string and a form body (the ``formPost`` extension),
authenticates (:mod:`ui.subsonic.auth`), and dispatches to the handler registered
for the method name in :mod:`ui.subsonic.registry`. Handlers run in a worker thread
and return a payload that :mod:`ui.subsonic.envelope` wraps and renders as XML or
JSON (``f=json``), or a file response (stream, download, cover art).

Errors are Subsonic errors (HTTP 200, ``status="failed"``): 10 missing parameter,
40 wrong credentials (or no user configured), 41 token auth unavailable for the
user, 43/44 API-key conflicts, 50 not authorised, 70 not found, and 0 for an
unknown method or a malformed value. Nothing reaches the client as a 500.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import Response

from catalog.library_view import ViewCache
from ui.state import ServiceState
from ui.subsonic import browsing, library, media, similarity, system  # noqa: F401 (register)
from ui.subsonic.auth import authenticate
from ui.subsonic.context import Context
from ui.subsonic.envelope import GENERIC, NOT_AUTHORISED, SubsonicError, envelope, render
from ui.subsonic.registry import METHODS

log = logging.getLogger("sonic.subsonic")
MAX_FORM_BYTES = 1_000_000


def _answer(ctx: Context, name: str) -> Response | dict:
    found = METHODS.get(name)
    if found is None:
        raise SubsonicError(GENERIC, f"unknown or unsupported method {name[:60]!r}")
    if found.auth:
        ctx.user = authenticate(ctx)
        if found.admin and not ctx.user.admin:
            raise SubsonicError(NOT_AUTHORISED, f"{name} needs an admin user")
    return found.handler(ctx)


def mount(app: FastAPI, state: ServiceState) -> None:
    """Add ``/rest/{method}`` to ``app`` (a route of its own, not an included router:
    the app's route list stays plain routes, which the probes of every route walk)."""
    views = ViewCache()

    @app.api_route("/rest/{name}", methods=["GET", "POST", "HEAD"], include_in_schema=False)
    async def subsonic(name: str, request: Request) -> Response:
        params = parse_qs(request.url.query, keep_blank_values=True)
        if request.method == "POST":
            body = await request.body()
            kind = request.headers.get("content-type", "")
            if kind.startswith("application/x-www-form-urlencoded") and len(body) < MAX_FORM_BYTES:
                for key, values in parse_qs(body.decode("utf-8", "replace"),
                                            keep_blank_values=True).items():  # fmt: skip
                    params.setdefault(key, []).extend(values)
        ctx = Context(params, state, views)
        fmt = ctx.get("f", "xml")
        method_name = name[:-5] if name.endswith(".view") else name
        try:
            result = await anyio.to_thread.run_sync(_answer, ctx, method_name)
        except SubsonicError as exc:
            return render(envelope(error=exc), fmt, ctx.get("callback"))
        except Exception:  # a bug must still answer in the protocol, never as a bare 500
            log.exception("subsonic %s failed", method_name)
            error = SubsonicError(GENERIC, f"{method_name} failed on the server")
            return render(envelope(error=error), fmt, ctx.get("callback"))
        if isinstance(result, Response):
            return result
        return render(envelope(result), fmt, ctx.get("callback"))
