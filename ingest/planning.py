"""Which planned files this ingest analyses, and which it takes over as moves.

On SQLite every planned file is this run's. On PostgreSQL several ingests may run
at once: each file is claimed only when it is about to be handed to a decoder, so
concurrent runs split a library rather than one claiming it all, and a vanished
track's row is moved to a new path only by the run that holds its claim.
Mixed into :class:`ingest.pipeline.IngestRun`.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from catalog.track_status import TrackStatus
from ingest.worker import Task, file_facts
from ingest.worker_pool import WorkerPool

if TYPE_CHECKING:
    from catalog.claims import Claims
    from catalog.schema import Track
    from catalog.store import Catalog
    from ingest.options import IngestSummary
    from ingest.progress import ProgressSink
    from ingest.recording import TrackState
    from ingest.scan import Plan


class Planning:
    """Claims, moves and handing files out (a mixin of :class:`~ingest.pipeline.IngestRun`)."""

    catalog: Catalog
    claims: Claims | None
    plan: Plan
    pending: deque[Task]
    progress: ProgressSink
    states: dict[int, TrackState]
    summary: IngestSummary

    def _feed(self, pool: WorkerPool, ahead: int) -> None:
        """Hand planned files to the decoders, keeping ``ahead`` of them in flight.

        Files go out as decoders free up rather than all at once, so that on a
        shared catalog each is claimed only when this ingest is about to start it,
        and concurrent ingests split the library instead of one claiming it all.
        """
        while self.pending and len(self.states) < ahead:
            task = self.pending.popleft()
            if not self._claim(task):
                self.progress.advance(0.0)
                continue
            self.states[task.task_id] = self._new_state(task)
            pool.submit(task)

    def _claim(self, task: Task) -> bool:
        """Whether this ingest should analyse ``task`` (always, on SQLite).

        On PostgreSQL: False when another ingest holds the file's claim, or when,
        claim in hand, the row shows another ingest already did it since the plan.
        """
        if not self.claims.shared:
            return True
        if not self.claims.path(task.path):
            self.summary.claimed_elsewhere += 1
            return False
        row = self.catalog.track_by_path(task.path)
        if row is None:
            return True
        if done(row, Path(task.path), self.model.model_id):
            self.summary.skipped += 1
            return False
        self.plan.task_rows.setdefault(task.task_id, row.id)  # a row another ingest added
        return True

    def _vanished_row(self, content_hash: str) -> int | None:
        """A vanished row with this content for a moved file to take over, claimed."""
        return self.plan.moves.claim(content_hash, available=self._may_take_over)

    def _may_take_over(self, row_id: int) -> bool:
        """Whether this ingest may move vanished row ``row_id`` (always, on SQLite).

        On PostgreSQL the row's claim is taken here, and a row another ingest moved
        meanwhile is turned down.
        """
        if not self.claims.row(row_id):
            return False
        return not self.claims.shared or self._still_missing([row_id]) == [row_id]

    def _still_missing(self, row_ids: list[int]) -> list[int]:
        """Rows whose file is still gone and that no other ingest is moving (PostgreSQL)."""
        paths = self.catalog.paths_of([i for i in row_ids if self.claims.row(i)])
        return [i for i, path in paths.items() if not os.path.lexists(path)]

    # -- messages from workers -----------------------------------------------------------

    def _reused_by_hash(self, state: TrackState, pool: WorkerPool) -> None:
        task, facts = state.task, state.facts
        del self.states[task.task_id]
        row_id = self.plan.task_rows.get(task.task_id)
        if row_id is None:  # a new path: claim a vanished track with this content
            row_id = self._vanished_row(facts.content_hash)
            if row_id is None:  # another copy already claimed it: analyse this one
                retry = replace(task, expected_hash=None, allow_move=False)
                self.states[task.task_id] = self._new_state(retry)
                pool.submit(retry)
                return
        else:
            self.plan.moves.keep(row_id)
        self.catalog.touch(row_id, facts)
        self.summary.reused += 1
        self.progress.advance(0.0)

    def _reuse(self, row_id: int, path: Path) -> None:
        try:
            facts = file_facts(path)
        except OSError:  # vanished or became a fifo since the plan: it stays missing
            return
        self.catalog.touch(row_id, facts)
        self.plan.moves.keep(row_id)
        self.summary.reused += 1


def done(row: Track, path: Path, model_id: str) -> bool:
    """Whether ``row`` already records the file at ``path`` as it is now (see scan)."""
    try:
        stat = path.stat()
    except OSError:
        try:
            stat = os.lstat(path)
        except OSError:
            return False
    if (row.size, row.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
        return False
    if row.status == TrackStatus.FAILED:
        return True
    return row.status == TrackStatus.OK and row.embedding is not None and row.model_id == model_id
