"""The service's door: the Host header, the API token (or a signed link), the body limit.

One pure ASGI middleware in front of every route (the UI, the docs and ``/health``
included). The OpenSubsonic API under ``/rest/`` is the exception to the token:
Subsonic clients cannot send it, so its users log in there with their own accounts
(``ui.subsonic.auth``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

import anyio
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ui.safe_json import SafeJSONResponse
from ui.signed_links import link_key, signed_track
from ui.state import ALLOWED_HOSTS_ENV, LOOPBACK_HOSTS

TOKEN_COOKIE = "sonic_token"
SUBSONIC_PREFIX = "/rest/"  # Subsonic clients authenticate per request (ui.subsonic.auth)


class TooLarge(HTTPException):
    """A request body past the limit (413), raised while it is read."""

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
        except TooLarge as exc:
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
                    raise TooLarge(self.max_body)
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
