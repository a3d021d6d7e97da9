"""``sonic tag-genres``: the library model's confident suggestions, written into files.

A dry run by default. Writing backs up the exact old genre field in the catalog
first, then writes, then records the file's new size, mtime and hash so the next
ingest does not take a tag edit for new audio. ``undo`` puts the old field back,
but never over a field someone changed since (that would lose their edit).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from catalog.genre_names import normalise_genres
from catalog.genre_store import add_backup, mark_undone, pending_backups
from catalog.genre_tags import set_raw_genre_tags
from catalog.genre_views import disagreements
from catalog.schema import Track
from ingest.tag_writer import GenreField, TagWriteError, read_field, write_field
from ingest.worker import file_facts


def preferred_spellings(catalog) -> dict[str, str]:
    """For each canonical genre, the library's most common way of writing it.

    A suggestion is written in the owner's words ("Hip-Hop" where the library says
    so), not in the catalog's internal spelling.
    """
    mapping = catalog.genre_mapping()
    counts: dict[str, Counter] = {}
    with catalog.sessions() as s:
        for (raw,) in s.execute(select(Track.genre_tag_raw).where(Track.genre_tag.is_not(None))):
            values = json.loads(raw)
            if len(values) != 1:
                continue
            genres = normalise_genres(values, mapping)
            if len(genres) == 1 and not values[0].strip().startswith("("):
                counts.setdefault(genres[0], Counter())[values[0].strip()] += 1
    return {g: c.most_common(1)[0][0] for g, c in counts.items()}


def plan(catalog, mistagged: bool = False, track_ids: set[int] | None = None) -> list[dict]:
    """What ``--apply`` would write: untagged tracks (and, asked, contradicted tags)."""
    found = disagreements(catalog, limit=10**9)
    rows = found["untagged"] + (found["mistagged"] if mistagged else [])
    spelling = preferred_spellings(catalog)
    out = []
    for row in rows:
        if track_ids is not None and row["id"] not in track_ids:
            continue
        out.append({**row, "write": spelling.get(row["suggestion"], row["suggestion"])})
    return out


def _hash_of(catalog, track_id: int) -> str | None:
    with catalog.sessions() as s:
        return s.scalar(select(Track.content_hash).where(Track.id == track_id))


def _after_write(catalog, track_id: int, path: Path, values: list[str] | None) -> None:
    catalog.touch(track_id, file_facts(path))  # a tag edit is not new audio
    set_raw_genre_tags(catalog, {track_id: values or []})


def apply(catalog, rows: list[dict]) -> list[dict]:
    """Write each row's suggestion; returns per-row outcomes (written or why not)."""
    outcomes = []
    for row in rows:
        path, tid = Path(row["path"]), row["id"]
        try:
            if file_facts(path).content_hash != _hash_of(catalog, tid):
                raise TagWriteError(
                    f"{path}: changed since it was indexed; run `sonic ingest` on it first"
                )
            old = read_field(path)
            backup = add_backup(catalog, tid, str(path), old.field, old.values, old.encoding,
                                old.position, [row["write"]])  # fmt: skip
            try:
                write_field(path, GenreField(old.field, [row["write"]], old.encoding,
                                             old.position))  # fmt: skip
            except TagWriteError:
                mark_undone(catalog, backup)  # nothing was written: nothing to undo
                raise
            _after_write(catalog, tid, path, [row["write"]])
            outcomes.append({"id": tid, "path": str(path), "written": row["write"],
                             "old": old.values})  # fmt: skip
        except OSError as exc:
            outcomes.append({"id": tid, "path": str(path), "error": str(exc)})
    return outcomes


def undo(catalog, track_ids: set[int] | None = None) -> list[dict]:
    """Restore every genre field ``apply`` wrote (newest first) that is still as written."""
    outcomes = []
    for b in pending_backups(catalog, track_ids):
        path = Path(b.path)
        try:
            now = read_field(path)
            if now.values != b.new_values:
                raise TagWriteError(
                    f"{path}: its genre was changed since tag-genres wrote it "
                    f"({now.values!r}); left as it is"
                )
            write_field(path, GenreField(b.field, b.old_values, b.encoding, b.position))
            mark_undone(catalog, b.id)
            _after_write(catalog, b.track_id, path, b.old_values)
            outcomes.append({"id": b.track_id, "path": str(path), "restored": b.old_values})
        except OSError as exc:
            outcomes.append({"id": b.track_id, "path": str(path), "error": str(exc)})
    return outcomes
