"""Playlists from the catalog: sound-alike "radio" from a seed track, and M3U output.

Pure data: the radio is built from the index's neighbours and the tags SQLite
holds; the faces above decide how to serve it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import quote

from sqlalchemy import select

from catalog.errors import TrackNotFound
from catalog.neighbours import similar
from catalog.paths import display_path, path_is_text
from catalog.schema import Track
from catalog.store import Catalog
from catalog.track_summaries import track_summary


def _same(a: str | None, b: str | None) -> bool:
    """Equal, case-insensitively; an unknown artist or album matches nothing."""
    return bool(a) and bool(b) and a.strip().casefold() == b.strip().casefold()


def radio(catalog: Catalog, seed_id: int, n: int = 20, pool: int | None = None) -> dict:
    """A sound-alike playlist that starts at ``seed_id``.

    Candidates are the seed's nearest neighbours (``pool`` of them, by default
    ``4 n``), best first. Each next track is the most similar remaining candidate
    whose artist and album differ from the previous track's; only when none is
    left does a repeat follow (counted in ``relaxed``). Copies of the same audio
    (equal content hashes) appear once.
    """
    if n <= 0:
        raise ValueError("n must be positive")
    with catalog.sessions() as s:
        seed = s.get(Track, seed_id)
    if seed is None:
        raise TrackNotFound(f"no track with id {seed_id}")
    candidates = similar(catalog, seed_id, k=pool or max(4 * n, 20))
    with catalog.sessions() as s:
        hashes = dict(
            s.execute(
                select(Track.id, Track.content_hash).where(
                    Track.id.in_([c["id"] for c in candidates] + [seed_id])
                )
            ).all()
        )
    seen_hashes = {hashes.get(seed_id)} - {None}
    remaining = []
    for cand in candidates:
        digest = hashes.get(cand["id"])
        if digest is not None and digest in seen_hashes:
            continue
        seen_hashes.add(digest)
        remaining.append(cand)

    playlist = [{**track_summary(seed), "score": 1.0}]
    relaxed = 0
    while remaining and len(playlist) < n:
        prev = playlist[-1]
        pick = next(
            (
                i
                for i, c in enumerate(remaining)
                if not _same(c["artist"], prev["artist"]) and not _same(c["album"], prev["album"])
            ),
            None,
        )
        if pick is None:
            pick, relaxed = 0, relaxed + 1
        playlist.append(remaining.pop(pick))
    return {"seed": seed_id, "n": n, "relaxed": relaxed, "tracks": playlist}


def m3u_path(path: str) -> str:
    """A local path as an M3U entry that names the same file, whatever its bytes.

    A UTF-8 name stays a plain path. A name that is not (lone surrogates, from
    ``os.fsdecode``) cannot be written to a UTF-8 playlist as text, and an escaped
    display name would point nowhere, so it becomes a ``file://`` URL of its
    percent-encoded bytes, which players decode back to the exact name.
    """
    if path_is_text(path):
        return path
    return "file://" + quote(os.fsencode(path))


def to_m3u(tracks: list[dict], location: Callable[[dict], str]) -> str:
    """Extended M3U text; ``location(track)`` gives each entry's URL or path.

    Titles are only shown, so an undecodable file name in one is escaped
    (``display_path``); locations must be exact, so they come from ``location``.
    """
    lines = ["#EXTM3U"]
    for t in tracks:
        seconds = int(round(t["duration_s"])) if t.get("duration_s") else -1
        name = " - ".join(x for x in (t.get("artist"), t.get("title")) if x)
        name = name or t["path"].rsplit("/", 1)[-1]
        lines.append(f"#EXTINF:{seconds},{_one_line(display_path(name))}")
        lines.append(_one_line(location(t)))
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return " ".join(str(text).splitlines())
