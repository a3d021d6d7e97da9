"""Moved files: the one place that decides a new path is a catalogued track that moved.

A move is a path the catalog has never seen whose content hash is that of a
catalogued track whose own file has vanished, and whose analysis stands for the
current model. Its analysis is kept (the row's path and file facts are updated by
:meth:`catalog.store.Catalog.touch`) instead of decoding the file again.

The decision has three moments, all here: the plan offers the vanished tracks
(:meth:`Moves.offer`), a decode worker, in another process, tells from the hash
whether a file needs decoding at all (:func:`reuses_analysis`, with the hashes
only), and the main process gives each vanished track to one new path
(:meth:`Moves.claim`); what no path claimed is marked missing
(:meth:`Moves.unclaimed`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from catalog.track_lookups import FileState
    from ingest.worker import Task


@dataclass
class Moves:
    """Vanished tracks that a new path may take over, and which ones were taken."""

    vanished: dict[str, list[int]] = field(default_factory=dict)  # content hash -> row ids
    claimed: set[int] = field(default_factory=set)

    def offer(self, row: FileState) -> None:
        """A catalogued track whose file is gone, with an analysis that may be reused."""
        if row.content_hash:
            self.vanished.setdefault(row.content_hash, []).append(row.id)

    @property
    def hashes(self) -> frozenset[str]:
        """What a decode worker needs to know (it cannot see the claims)."""
        return frozenset(self.vanished)

    def claim(
        self, content_hash: str, available: Callable[[int], bool] | None = None
    ) -> int | None:
        """The vanished track a new path with this content takes over, or None.

        None when another copy of the same content already took every such track:
        that path is a new track and is analysed. ``available`` may turn a candidate
        down (on a shared PostgreSQL catalog: another ingest holds it or moved it).
        """
        for row_id in self.vanished.get(content_hash, []):
            if row_id in self.claimed:
                continue
            if available is None or available(row_id):
                self.claimed.add(row_id)
                return row_id
        return None

    def keep(self, row_id: int) -> None:
        """A track found again under its own path: it is not missing either."""
        self.claimed.add(row_id)

    def unclaimed(self, row_ids: Iterable[int]) -> list[int]:
        """Of the tracks whose files vanished, those no path took over (they are missing)."""
        return [i for i in row_ids if i not in self.claimed]


def reuses_analysis(task: Task, content_hash: str | None, moved_hashes: frozenset[str]) -> bool:
    """Whether a hashed file needs no decoding: its stored analysis, or a moved track's, stands.

    Either the content is what this path's own row says (only touched), or the task
    may be a move (a path new to the catalog) and the content is a vanished track's.
    """
    if content_hash is None:
        return False
    return content_hash == task.expected_hash or (task.allow_move and content_hash in moved_hashes)
