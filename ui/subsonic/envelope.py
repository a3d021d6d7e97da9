"""The ``subsonic-response`` envelope, its error codes, and rendering it as XML or JSON.

Handlers return the payload as plain dicts (``{"album": {...}}``); this module wraps
it in the envelope every answer carries and renders it the way the request asked:
XML by default, JSON with ``f=json``. One payload convention serves both:

- a scalar value is an XML attribute (``True`` -> ``"true"``) and a JSON field;
- a dict is a child element / JSON object; a list is repeated child elements /
  a JSON array; the key ``value`` is an element's text (``<genre>rock</genre>``,
  JSON ``{"value": "rock"}``), as the Subsonic schema has it.

Errors keep HTTP 200 with ``status="failed"`` and a Subsonic code, which is what
clients read; a handler's bug becomes error 0, never a bare 500.
"""

from __future__ import annotations

import json
from datetime import datetime
from xml.sax.saxutils import escape, quoteattr

from fastapi.responses import Response

API_VERSION = "1.16.1"
SERVER_TYPE = "sonic-catalog"
SERVER_VERSION = "0.1.0"
XMLNS = "http://subsonic.org/restapi"

# The codes of the Subsonic API (and of the apiKeyAuthentication extension: 42-44).
GENERIC = 0
MISSING_PARAMETER = 10
CLIENT_TOO_OLD = 20
SERVER_TOO_OLD = 30
WRONG_CREDENTIALS = 40
TOKEN_AUTH_UNSUPPORTED = 41
AUTH_MECHANISM_UNSUPPORTED = 42
CONFLICTING_AUTH = 43
INVALID_API_KEY = 44
NOT_AUTHORISED = 50
NOT_FOUND = 70


class SubsonicError(Exception):
    """A failed answer: a Subsonic error code and a message for the user."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _scalar(value: object) -> object:
    if isinstance(value, datetime):
        return value.replace(microsecond=0).isoformat() + "Z"
    return value


def clean(value: object) -> object:
    """The payload with ``None`` fields dropped and datetimes as ISO-8601 UTC."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value if v is not None]
    return _scalar(value)


def _attr(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(round(value, 6))
    return str(value)


def _xml_element(name: str, value: object, out: list[str]) -> None:
    if isinstance(value, list):
        for item in value:
            _xml_element(name, item, out)
        return
    if not isinstance(value, dict):
        out.append(f"<{name}>{escape(_attr(value))}</{name}>")
        return
    attrs = "".join(
        f" {k}={quoteattr(_attr(v))}"
        for k, v in value.items()
        if k != "value" and not isinstance(v, dict | list)
    )
    children = [(k, v) for k, v in value.items() if isinstance(v, dict | list)]
    text = escape(_attr(value["value"])) if "value" in value else ""
    if not children and not text:
        out.append(f"<{name}{attrs}/>")
        return
    out.append(f"<{name}{attrs}>{text}")
    for key, child in children:
        _xml_element(key, child, out)
    out.append(f"</{name}>")


def envelope(payload: dict | None = None, error: SubsonicError | None = None) -> dict:
    body: dict = {
        "status": "failed" if error else "ok",
        "version": API_VERSION,
        "type": SERVER_TYPE,
        "serverVersion": SERVER_VERSION,
        "openSubsonic": True,
    }
    if error is not None:
        body["error"] = {"code": error.code, "message": error.message}
    body.update(clean(payload or {}))
    return body


def render(body: dict, fmt: str, callback: str | None = None) -> Response:
    """The envelope as the client asked: ``xml`` (default), ``json`` or ``jsonp``."""
    if fmt in ("json", "jsonp"):
        text = json.dumps({"subsonic-response": body}, ensure_ascii=False,
                          default=str, separators=(",", ":"))  # fmt: skip
        if fmt == "jsonp" and callback and callback.replace("_", "").replace(".", "").isalnum():
            return Response(f"{callback}({text});", media_type="application/javascript")
        return Response(text.encode("utf-8", "backslashreplace"), media_type="application/json")
    out = ['<?xml version="1.0" encoding="UTF-8"?>']
    root = dict(body)
    root["xmlns"] = XMLNS
    _xml_element("subsonic-response", root, out)
    xml = "".join(out).encode("utf-8", "backslashreplace")
    return Response(xml, media_type="application/xml")
