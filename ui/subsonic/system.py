"""System calls: ``ping``, ``getLicense``, ``getOpenSubsonicExtensions``, ``getUser``."""

from __future__ import annotations

from ui.subsonic.context import Context, not_found
from ui.subsonic.registry import method

# Advertised at the versions implemented here (opensubsonic.netlify.app, Extensions).
EXTENSIONS = {
    "sonicSimilarity": [1],
    "formPost": [1],
    "apiKeyAuthentication": [1],
}


@method("ping")
def ping(_: Context) -> dict:
    return {}


@method("getLicense")
def get_license(_: Context) -> dict:
    return {"license": {"valid": True}}


@method("getOpenSubsonicExtensions", auth=False)
def extensions(_: Context) -> dict:
    return {
        "openSubsonicExtensions": [
            {"name": name, "versions": versions} for name, versions in EXTENSIONS.items()
        ]
    }


@method("getUser")
def get_user(ctx: Context) -> dict:
    name = ctx.get("username") or ctx.user.name
    if name != ctx.user.name and not ctx.user.admin:
        from ui.subsonic.envelope import NOT_AUTHORISED, SubsonicError

        raise SubsonicError(NOT_AUTHORISED, "only an admin may look at another user")
    from catalog.subsonic_users import get_user as find

    user = find(ctx.catalog, name)
    if user is None:
        raise not_found(f"user {name!r}")
    roots = list(range(1, len(ctx.view.roots) + 1))
    return {
        "user": {
            "username": user.name, "email": "", "scrobblingEnabled": True,
            "adminRole": user.admin, "settingsRole": True, "downloadRole": True,
            "uploadRole": False, "playlistRole": True, "coverArtRole": True,
            "commentRole": False, "podcastRole": False, "streamRole": True,
            "jukeboxRole": False, "shareRole": False, "videoConversionRole": False,
            "folder": roots,
        }
    }  # fmt: skip
