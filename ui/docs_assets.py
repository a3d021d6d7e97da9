"""``/docs`` and ``/redoc`` from assets this service serves itself, never a CDN.

FastAPI's default pages load Swagger UI and ReDoc from jsDelivr, so on a home server
without internet ``/docs`` stayed blank. The assets come from the ``fastapi-offline``
package (MIT; it ships ``swagger-ui-bundle.js``, ``swagger-ui.css`` and
``redoc.standalone.js`` in its ``static`` folder) and are served from
``/docs-assets/``, under the same token and Host checks as every route.
"""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"


def assets_folder() -> Path:
    """The folder of the vendored Swagger UI and ReDoc files (from ``fastapi-offline``)."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


@functools.cache
def offline_redoc_bundle() -> bytes:
    """ReDoc's bundle without its one remaining CDN fetch.

    The standalone bundle draws a "docs by Redocly" logo from cdn.redoc.ly in the side
    bar, unconditionally; offline that is a request that hangs or fails. An empty
    ``data:`` URL makes the image fail at once, which ReDoc answers by not drawing it.
    """
    bundle = (assets_folder() / "redoc.standalone.js").read_bytes()
    return bundle.replace(REDOC_LOGO, b"data:,")


def add_offline_docs(app: FastAPI) -> None:
    """Serve the docs pages on ``app`` (created with ``docs_url=None, redoc_url=None``)."""

    @app.get(f"{ASSETS_PATH}/redoc.offline.js", include_in_schema=False)
    def redoc_bundle() -> Response:
        return Response(offline_redoc_bundle(), media_type="text/javascript")

    app.mount(ASSETS_PATH, StaticFiles(directory=assets_folder()), name="docs-assets")
    title = app.title
    openapi_url = app.openapi_url or "/openapi.json"
    redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - API docs",
            oauth2_redirect_url=redirect,
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
        )

    @app.get(redirect, include_in_schema=False)
    def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{ASSETS_PATH}/redoc.offline.js",
            redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )
