"""Subsonic users and API keys, and how their secrets are kept at rest.

Subsonic's token auth sends ``t = md5(password + s)`` with a fresh salt ``s``: to
check it the server must know the password itself, so a one-way hash cannot serve
it. Real servers face the same choice; Navidrome keeps each password encrypted with
a key of the server's own. So does this catalog: ``password_secret`` is the password
encrypted (Fernet: AES-128-CBC with an HMAC-SHA256 tag) under a random key kept in
``subsonic.key`` in the data directory (mode 0600, created on first use), and
``password_hash`` is a salted PBKDF2 hash that checks ``p=`` logins without
decrypting anything. A copy of the database alone reveals no password; the database
together with the key file does, as with Navidrome. A user added with
``--no-token-auth`` has only the hash: token logins for them get error 41 and they
log in with ``p=`` (over HTTPS) or an API key.

API keys (the ``apiKeyAuthentication`` extension) are random and stored as their
SHA-256 only: a key is shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import bindparam, delete, select

from catalog.clock import utc_now
from catalog.schema import SubsonicApiKey, SubsonicUser
from catalog.store import Catalog

KEY_FILE = "subsonic.key"
PBKDF2_ITERATIONS = 120_000
MAX_NAME = 128


class UserError(ValueError):
    """A user cannot be added, changed or removed as asked; the message says why."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    admin: bool
    token_auth: bool  # a reversibly encrypted password is kept (see the module doc)


def _key(catalog: Catalog) -> Fernet:
    """The data directory's secret key, made (0600) the first time one is needed."""
    path = Path(catalog.paths.root) / KEY_FILE
    if not path.exists():
        key = Fernet.generate_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key)
        finally:
            os.close(fd)
    return Fernet(path.read_bytes().strip())


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PBKDF2_ITERATIONS)
    return f"pbkdf2_sha256${PBKDF2_ITERATIONS}${salt.hex()}${digest.hex()}"


# (stored hash, sha256 of a password) pairs that verified: clients that log in with
# ``p=`` send it on every request, and PBKDF2 is meant to be slow. The stored hash
# carries its random salt, so a changed password never matches an old entry.
_VERIFIED: dict[tuple[str, str], bool] = {}
_VERIFIED_MAX = 1024


def _check_hash(stored: str, password: str) -> bool:
    memo = (stored, hashlib.sha256(password.encode()).hexdigest())
    if memo in _VERIFIED:
        return True
    ok = _check_hash_slowly(stored, password)
    if ok:
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED[memo] = True
    return ok


def _check_hash_slowly(stored: str, password: str) -> bool:
    try:
        _, rounds, salt, digest = stored.split("$")
        found = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(rounds))
    except ValueError:
        return False
    return hmac.compare_digest(found.hex(), digest)


def _user(row: SubsonicUser) -> User:
    return User(row.id, row.name, bool(row.admin), row.password_secret is not None)


def add_user(
    catalog: Catalog, name: str, password: str, admin: bool = False, token_auth: bool = True
) -> User:
    """Create a user; refuses an empty or taken name and an empty password."""
    name = name.strip()
    if not name or len(name) > MAX_NAME or any(c in name for c in "\r\n\t"):
        raise UserError(f"a user name is 1 to {MAX_NAME} printable characters")
    if not password:
        raise UserError("the password must not be empty")
    secret = _key(catalog).encrypt(password.encode()).decode() if token_auth else None
    with catalog.sessions.begin() as s:
        if s.scalar(select(SubsonicUser.id).where(SubsonicUser.name == name)) is not None:
            raise UserError(f"there is already a user named {name!r}")
        row = SubsonicUser(
            name=name, password_hash=hash_password(password), password_secret=secret,
            admin=admin, created_at=utc_now(),
        )  # fmt: skip
        s.add(row)
        s.flush()
        return _user(row)


def set_password(catalog: Catalog, name: str, password: str, token_auth: bool = True) -> None:
    if not password:
        raise UserError("the password must not be empty")
    with catalog.sessions.begin() as s:
        row = s.scalar(select(SubsonicUser).where(SubsonicUser.name == name))
        if row is None:
            raise UserError(f"no user named {name!r}")
        row.password_hash = hash_password(password)
        row.password_secret = (
            _key(catalog).encrypt(password.encode()).decode() if token_auth else None
        )


def remove_user(catalog: Catalog, name: str) -> None:
    """Delete a user with their API keys, playlists, stars and plays."""
    with catalog.sessions.begin() as s:
        row = s.scalar(select(SubsonicUser).where(SubsonicUser.name == name))
        if row is None:
            raise UserError(f"no user named {name!r}")
        s.delete(row)


def list_users(catalog: Catalog) -> list[User]:
    with catalog.sessions() as s:
        return [_user(r) for r in s.scalars(select(SubsonicUser).order_by(SubsonicUser.name))]


def any_user(catalog: Catalog) -> bool:
    with catalog.sessions() as s:
        return s.scalar(select(SubsonicUser.id).limit(1)) is not None


def get_user(catalog: Catalog, name: str) -> User | None:
    with catalog.sessions() as s:
        row = s.scalar(select(SubsonicUser).where(SubsonicUser.name == name))
        return _user(row) if row is not None else None


def check_password(catalog: Catalog, name: str, password: str) -> User | None:
    """The user when ``password`` is theirs (``p=`` logins), else None."""
    with catalog.sessions() as s:
        row = s.scalar(select(SubsonicUser).where(SubsonicUser.name == name))
        if row is None:
            _check_hash_slowly(hash_password("x"), password)  # as slow for an unknown name
            return None
        return _user(row) if _check_hash(row.password_hash, password) else None


def plain_password(catalog: Catalog, user_id: int) -> str | None:
    """The decrypted password for token auth; None when only a hash is kept."""
    with catalog.sessions() as s:
        secret = s.scalar(select(SubsonicUser.password_secret).where(SubsonicUser.id == user_id))
    if secret is None:
        return None
    try:
        return _key(catalog).decrypt(secret.encode()).decode()
    except InvalidToken:  # the key file was replaced: the secret cannot be read any more
        return None


_LOGIN = select(
    SubsonicUser.id, SubsonicUser.name, SubsonicUser.admin, SubsonicUser.password_secret
).where(SubsonicUser.name == bindparam("name"))
# encrypted secret -> password: token logins come with every request, and the secret
# changes with the password, so an old entry is never used again (and never revealed).
_DECRYPTED: dict[str, str] = {}


def token_login(catalog: Catalog, name: str) -> tuple[User, str | None] | None:
    """(the user, their password or None when only a hash is kept), in one read.

    What token auth needs on every request: one prepared SELECT on a pooled
    connection, and the decryption only the first time a secret is seen.
    """
    with catalog.engine.connect() as conn:
        row = conn.execute(_LOGIN, {"name": name}).first()
    if row is None:
        return None
    user = User(row.id, row.name, bool(row.admin), row.password_secret is not None)
    secret = row.password_secret
    if secret is None:
        return user, None
    plain = _DECRYPTED.get(secret)
    if plain is None:
        try:
            plain = _key(catalog).decrypt(secret.encode()).decode()
        except InvalidToken:  # the key file was replaced: the secret cannot be read any more
            return user, None
        if len(_DECRYPTED) >= _VERIFIED_MAX:
            _DECRYPTED.clear()
        _DECRYPTED[secret] = plain
    return user, plain


def new_api_key(catalog: Catalog, name: str) -> str:
    """A fresh API key for the user (shown once; only its hash is kept)."""
    key = secrets.token_urlsafe(32)
    with catalog.sessions.begin() as s:
        user_id = s.scalar(select(SubsonicUser.id).where(SubsonicUser.name == name))
        if user_id is None:
            raise UserError(f"no user named {name!r}")
        s.add(SubsonicApiKey(user_id=user_id, key_hash=_key_hash(key), created_at=utc_now()))
    return key


def revoke_api_keys(catalog: Catalog, name: str) -> int:
    with catalog.sessions.begin() as s:
        user_id = s.scalar(select(SubsonicUser.id).where(SubsonicUser.name == name))
        if user_id is None:
            raise UserError(f"no user named {name!r}")
        return s.execute(delete(SubsonicApiKey).where(SubsonicApiKey.user_id == user_id)).rowcount


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def user_for_api_key(catalog: Catalog, key: str) -> User | None:
    with catalog.sessions() as s:
        row = s.scalar(
            select(SubsonicUser)
            .join(SubsonicApiKey, SubsonicApiKey.user_id == SubsonicUser.id)
            .where(SubsonicApiKey.key_hash == _key_hash(key))
        )
        return _user(row) if row is not None else None
