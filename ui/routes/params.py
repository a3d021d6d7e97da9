"""The path and query parameters several resources share: track and job ids.

One strict definition for every id in a path or query: an id names one track, and
a second spelling of it is a way around caches, logs and link signatures.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path as PathParam
from fastapi import Query
from pydantic import BeforeValidator

MAX_TRACK_ID = 2**62
CANONICAL_ID = re.compile(r"[1-9][0-9]*")


def _canonical_id(value: object) -> object:
    """Refuse ids that int() would bend into another: "+1", "01", "1.0", " 1", "1_0"."""
    if isinstance(value, str) and not CANONICAL_ID.fullmatch(value):
        raise ValueError(
            "a track id is a positive whole number written plainly (1, 2, 42): "
            "no sign, spaces, leading zeros, decimals or separators"
        )
    return value


TrackId = Annotated[
    int, BeforeValidator(_canonical_id), PathParam(ge=1, le=MAX_TRACK_ID, description="Track id.")
]
SeedId = Annotated[
    int,
    BeforeValidator(_canonical_id),
    Query(ge=1, le=MAX_TRACK_ID, description="Seed track id."),
]
JobId = Annotated[str, PathParam(pattern="^[0-9a-f]{32}$", description="A job id (32 hex).")]
