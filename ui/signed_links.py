"""Signed, expiring links to one track's audio, for playlists that leave the browser.

An M3U file is copied, mailed and kept in players' histories, so it must not
carry the API token (the key to every route). Each entry instead carries
``?exp=UNIX_SECONDS&sig=HEX``: HMAC-SHA256 over ``"{track_id}:{exp}"``. The
Guard accepts it for ``GET /tracks/{track_id}/audio`` of that one track, until
``exp``, and for nothing else.

The signing key is derived from the API token (HMAC of a fixed label), not kept
in a file: there is nothing more to store, protect or back up; links exist only
where a token does (without one every route is open anyway); changing the token
revokes every link issued; and the label keeps a signature from ever being a
token or revealing one (HMAC is one-way).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

LABEL = b"sonic-catalog signed track link v1"
DEFAULT_LIFETIME_S = 24 * 3600
MAX_LIFETIME_S = 30 * 24 * 3600
AUDIO_ROUTE = re.compile(r"/tracks/([1-9][0-9]{0,18})/audio")


def link_key(token: str | bytes) -> bytes:
    """The signing key for ``token``: one-way, so links never disclose the token."""
    raw = token.encode() if isinstance(token, str) else token
    return hmac.new(raw, LABEL, hashlib.sha256).digest()


def signature(key: bytes, track_id: int, expires: int) -> str:
    return hmac.new(key, f"{track_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def signed_query(key: bytes, track_id: int, lifetime_s: int, now: float | None = None) -> str:
    """``exp=...&sig=...`` for ``track_id``'s audio, valid ``lifetime_s`` (capped) from now."""
    lifetime = max(1, min(int(lifetime_s), MAX_LIFETIME_S))
    expires = int(now if now is not None else time.time()) + lifetime
    return f"exp={expires}&sig={signature(key, track_id, expires)}"


def valid(key: bytes, track_id: int, exp: str, sig: str, now: float | None = None) -> bool:
    """Whether ``sig`` signs ``track_id`` until ``exp`` and ``exp`` has not passed.

    An expiry further ahead than the longest lifetime is refused too, so a link
    never outlives what this service would issue.
    """
    if not (exp.isascii() and exp.isdigit() and len(exp) <= 12 and sig.isascii()):
        return False
    expires, current = int(exp), int(now if now is not None else time.time())
    if not current <= expires <= current + MAX_LIFETIME_S:
        return False
    return hmac.compare_digest(sig.encode(), signature(key, track_id, expires).encode())


def signed_track(path: str, query: dict[str, list[str]], key: bytes) -> bool:
    """Whether a request for ``path`` with ``query`` carries a valid link for that track."""
    match = AUDIO_ROUTE.fullmatch(path)
    exp, sig = query.get("exp", []), query.get("sig", [])
    if match is None or len(exp) != 1 or len(sig) != 1:
        return False
    return valid(key, int(match.group(1)), exp[0], sig[0])
