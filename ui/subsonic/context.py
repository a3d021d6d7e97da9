"""One Subsonic request as the handlers see it: its parameters, user and catalog."""

from __future__ import annotations

from dataclasses import dataclass, field

from catalog.library_view import LibraryView, ViewCache
from catalog.subsonic_users import User
from ui.state import ServiceState
from ui.subsonic.envelope import GENERIC, MISSING_PARAMETER, NOT_FOUND, SubsonicError

TRUE = {"true", "1", "yes", "on"}
FALSE = {"false", "0", "no", "off"}


@dataclass
class Context:
    params: dict[str, list[str]]  # query string and form body (formPost), merged
    state: ServiceState
    views: ViewCache
    user: User | None = None
    request_headers: dict[str, str] = field(default_factory=dict)

    @property
    def catalog(self):
        return self.state.catalog

    @property
    def view(self) -> LibraryView:
        return self.views.get(self.state.fresh(block=False))

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.params.get(name)
        return values[0] if values else default

    def all(self, name: str) -> list[str]:
        return list(self.params.get(name, []))

    def required(self, name: str) -> str:
        value = self.get(name)
        if value is None or value == "":
            raise SubsonicError(MISSING_PARAMETER, f"required parameter is missing: {name}")
        return value

    def integer(self, name: str, default: int, low: int = 0, high: int = 10**9) -> int:
        """An integer parameter, clamped to [low, high] (a count over a bound is clamped)."""
        raw = self.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            message = f"parameter {name} must be an integer, not {raw[:40]!r}"
            raise SubsonicError(GENERIC, message) from None
        return max(low, min(high, value))

    def boolean(self, name: str, default: bool | None = None) -> bool | None:
        raw = self.get(name)
        if raw is None or raw == "":
            return default
        if raw.lower() in TRUE:
            return True
        if raw.lower() in FALSE:
            return False
        raise SubsonicError(GENERIC, f"parameter {name} must be true or false, not {raw[:40]!r}")


def not_found(what: str) -> SubsonicError:
    return SubsonicError(NOT_FOUND, f"{what} not found")


def track_id_of(ref: str) -> int | None:
    """The catalog track id in a song id (``tr-12``; a bare ``12`` too), else None."""
    text = ref[3:] if ref.startswith("tr-") else ref
    if text.isdigit() and len(text) < 19:
        return int(text)
    return None
