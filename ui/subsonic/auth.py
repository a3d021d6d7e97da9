"""Subsonic authentication: ``u`` + ``t``/``s``, ``u`` + ``p`` (plain or ``enc:``), ``apiKey``.

Checked per request, as the protocol has no sessions. Without any user configured
every call is refused (error 40 saying to run ``sonic user add``): the API never
opens by default. Secrets at rest: see :mod:`catalog.subsonic_users`.
"""

from __future__ import annotations

import hashlib
import hmac

from catalog import subsonic_users as users
from catalog.store import Catalog
from catalog.subsonic_users import User
from ui.subsonic.context import Context
from ui.subsonic.envelope import (
    CONFLICTING_AUTH,
    INVALID_API_KEY,
    MISSING_PARAMETER,
    TOKEN_AUTH_UNSUPPORTED,
    WRONG_CREDENTIALS,
    SubsonicError,
)

NO_USERS = (
    "no Subsonic user is configured on this server: run `sonic user add NAME` "
    "on the machine that hosts the catalog"
)


def _wrong() -> SubsonicError:
    return SubsonicError(WRONG_CREDENTIALS, "wrong username or password")


def _password(raw: str) -> str:
    if raw.startswith("enc:"):
        try:
            return bytes.fromhex(raw[4:]).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise _wrong() from None
    return raw


def authenticate(ctx: Context) -> User:
    """The user the request's credentials name, or the Subsonic error that refuses it."""
    catalog: Catalog = ctx.catalog
    name, token, salt, password = (ctx.get(k) for k in ("u", "t", "s", "p"))
    api_key = ctx.get("apiKey")
    if api_key is not None:
        if name is not None or token is not None or password is not None:
            raise SubsonicError(
                CONFLICTING_AUTH, "multiple conflicting authentication mechanisms provided"
            )
        user = users.user_for_api_key(catalog, api_key)
        if user is None:
            _no_users(catalog)
            raise SubsonicError(INVALID_API_KEY, "invalid API key")
        return user
    if not name:
        _no_users(catalog)
        raise SubsonicError(MISSING_PARAMETER, "required parameter is missing: u (or apiKey)")
    if token is not None or salt is not None:
        if not token or not salt:
            raise SubsonicError(MISSING_PARAMETER, "token authentication needs both t and s")
        found = users.token_login(catalog, name)
        if found is None:
            _no_users(catalog)
            raise _wrong()
        user, plain = found
        if plain is None:
            raise SubsonicError(
                TOKEN_AUTH_UNSUPPORTED,
                f"token authentication is not available for {name!r}: their password is kept "
                "as a hash only; log in with p= or an API key",
            )
        expected = hashlib.md5((plain + salt).encode()).hexdigest()
        if not hmac.compare_digest(expected, token.lower()):
            raise _wrong()
        return user
    if password is None:
        raise SubsonicError(MISSING_PARAMETER, "required parameter is missing: p, or t and s")
    user = users.check_password(catalog, name, _password(password))
    if user is None:
        _no_users(catalog)
        raise _wrong()
    return user


def _no_users(catalog: Catalog) -> None:
    """Error 40 saying why, when a login failed because no user exists at all."""
    if not users.any_user(catalog):
        raise SubsonicError(WRONG_CREDENTIALS, NO_USERS)
