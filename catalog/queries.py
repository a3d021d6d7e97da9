"""Read-side questions the CLI, the API and the UI ask of a catalog, in one import.

The faces (``ui/``) ask these through ``catalog.queries`` so that they need not know
which module answers; each question lives in a module of its own job:

- :mod:`catalog.browse`: a page of tracks by filters, and genre counts;
- :mod:`catalog.neighbours`: sound-alike search from a track or an embedding;
- :mod:`catalog.track_details`: one track in full, naming a track, its waveform;
- :mod:`catalog.track_summaries`: the short form every listing shows;
- :mod:`catalog.read_deadline`: reads the service may stop (:func:`time_limit`).

Every function returns plain dicts and lists (JSON-ready), so the faces can print or
serve them without knowing SQLAlchemy. Modules inside ``catalog/`` import from the
module that answers, not from here.
"""

from __future__ import annotations

from catalog.browse import browse, genre_counts
from catalog.errors import TrackNotFound
from catalog.neighbours import similar, similar_to_vector
from catalog.read_deadline import ReadTooSlow, time_limit
from catalog.track_details import resolve_track, track_details, waveform_overview
from catalog.track_summaries import track_summary

__all__ = [
    "ReadTooSlow",
    "TrackNotFound",
    "browse",
    "genre_counts",
    "resolve_track",
    "similar",
    "similar_to_vector",
    "time_limit",
    "track_details",
    "track_summary",
    "waveform_overview",
]
