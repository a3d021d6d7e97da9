"""The one JSON response class of the service: orjson, and file names that cannot fail.

Every JSON answer of the app goes through :class:`SafeJSONResponse` (the app's
default response class, each route's own answer, the error handlers and the
middleware's refusals), so no route has to remember which fields hold paths.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

try:  # a dependency of Gradio, so present wherever the UI is; the stdlib encoder otherwise
    import orjson
except ImportError:  # pragma: no cover
    orjson = None

from catalog.paths import displayable


class SafeJSONResponse(JSONResponse):
    """JSON that shows any text holding an undecodable file name (``\\xNN`` escapes).

    Catalog paths are the real names, which may be non-UTF-8 bytes held as lone
    surrogates; UTF-8 JSON refuses those (a 500). Only a failing render pays for
    the walk that makes them displayable.

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
