"""Finding audio files and deciding what each one needs.

The plan is what makes re-runs cheap: a file whose size and mtime match its row
and whose analysis came from the current model is skipped without being opened.
Files whose size or mtime changed are hashed (by a worker) and re-analysed only if
the content changed; new paths whose content matches a vanished track are moves
(:mod:`ingest.moves` decides).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from catalog.track_status import TrackStatus
from embeddings.audio import AUDIO_EXTENSIONS as AUDIO_EXTENSIONS  # training's very list
from embeddings.audio import iter_audio_files
from ingest.moves import Moves
from ingest.worker import Task

if TYPE_CHECKING:  # the catalog's rows only; a Ray actor imports this without SQLAlchemy
    from catalog.track_lookups import FileState


@dataclass
class Plan:
    """What an ingest run will do, decided before any file is opened."""

    tasks: list[Task] = field(default_factory=list)
    task_rows: dict[int, int] = field(default_factory=dict)  # task id -> existing row id
    restore: list[tuple[int, Path]] = field(default_factory=list)  # missing rows back in place
    skipped: int = 0
    moves: Moves = field(default_factory=Moves)  # vanished tracks a new path may take over
    missing_candidates: list[int] = field(default_factory=list)
    seen_paths: set[str] = field(default_factory=set)
    unreadable_folders: list[tuple[str, str]] = field(default_factory=list)  # (folder, why)

    @property
    def moved_hashes(self) -> frozenset[str]:
        return self.moves.hashes


def _reusable(row: FileState, model_id: str) -> bool:
    """Whether the stored outcome stands for the current model (failures always do)."""
    if row.status == TrackStatus.FAILED:
        return True
    return row.analysed and row.model_id == model_id


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _stat_or_lstat(path: Path) -> os.stat_result:
    """The file's stat, or the link's own for a dangling or looping symbolic link.

    The worker records such a link's failure with these lstat values, so the next
    run sees it unchanged and skips it instead of retrying it every time.
    """
    try:
        return path.stat()
    except OSError:
        return os.lstat(path)


def make_plan(
    roots: Iterable[Path], rows: list[FileState], model_id: str, files: Iterable[Path] | None = None
) -> Plan:
    """Compare the files under ``roots`` with the catalog rows."""
    root_list = [str(Path(r).expanduser().absolute()) for r in roots]
    by_path = {row.path: row for row in rows}
    plan = Plan()
    found = files if files is not None else iter_audio_files(root_list, plan.unreadable_folders)
    for path in found:
        key = str(path)
        plan.seen_paths.add(key)
        row = by_path.get(key)
        task_id = len(plan.tasks)
        if row is None:
            plan.tasks.append(Task(task_id, key, allow_move=True))
            continue
        try:
            stat = _stat_or_lstat(path)
        except OSError:
            continue
        same_file = row.size == stat.st_size and row.mtime_ns == stat.st_mtime_ns
        reusable = _reusable(row, model_id)
        if same_file and reusable:
            if row.status == TrackStatus.MISSING:
                plan.restore.append((row.id, path))
            else:
                plan.skipped += 1
            continue
        expected = row.content_hash if reusable else None
        plan.tasks.append(Task(task_id, key, expected_hash=expected, allow_move=False))
        plan.task_rows[task_id] = row.id

    for row in rows:
        if row.path in plan.seen_paths:
            continue
        gone = row.status == TrackStatus.MISSING or not os.path.exists(row.path)
        if not gone:
            continue
        if _reusable(row, model_id):
            plan.moves.offer(row)
        hidden = _under(row.path, [folder for folder, _ in plan.unreadable_folders])
        if row.status != TrackStatus.MISSING and _under(row.path, root_list) and not hidden:
            plan.missing_candidates.append(row.id)
    return plan
