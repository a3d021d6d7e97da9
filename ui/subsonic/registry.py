"""The table of Subsonic methods: name -> handler, and who may call it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi.responses import Response

from ui.subsonic.context import Context

Handler = Callable[[Context], "dict | Response"]


@dataclass(frozen=True)
class Method:
    handler: Handler
    auth: bool = True  # getOpenSubsonicExtensions answers without credentials
    admin: bool = False  # e.g. startScan: error 50 for other users


METHODS: dict[str, Method] = {}


def method(*names: str, auth: bool = True, admin: bool = False) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            METHODS[name] = Method(fn, auth, admin)
        return fn

    return register
