"""The move rules (ingest/moves.py), on their own; tests/test_ingest.py runs them in ingest."""

from __future__ import annotations

from catalog.schema import TrackStatus
from catalog.track_lookups import FileState
from ingest.moves import Moves, reuses_analysis
from ingest.worker import Task


def _row(row_id: int, content_hash: str | None) -> FileState:
    return FileState(
        id=row_id, path=f"/gone/{row_id}.wav", size=1, mtime_ns=1, content_hash=content_hash,
        status=TrackStatus.MISSING, model_id="m", analysed=True,
    )  # fmt: skip


def test_each_vanished_track_goes_to_one_new_path_and_the_rest_are_missing():
    moves = Moves()
    for row in (_row(1, "aa"), _row(2, "aa"), _row(3, "bb"), _row(4, None)):
        moves.offer(row)
    assert moves.hashes == frozenset({"aa", "bb"})  # a row without a hash cannot be a move
    assert moves.claim("aa") == 1
    assert moves.claim("aa") == 2
    assert moves.claim("aa") is None  # a third copy is a new track
    assert moves.claim("cc") is None
    moves.keep(4)  # found again in place
    assert moves.unclaimed([1, 2, 3, 4]) == [3]


def test_only_a_new_path_may_take_a_vanished_tracks_analysis():
    moved = frozenset({"aa"})
    assert reuses_analysis(Task(0, "/new.wav", allow_move=True), "aa", moved)
    assert not reuses_analysis(Task(0, "/changed.wav", allow_move=False), "aa", moved)
    touched = Task(0, "/touched.wav", expected_hash="bb", allow_move=False)
    assert reuses_analysis(touched, "bb", moved)
    assert not reuses_analysis(Task(0, "/edited.wav", expected_hash="bb"), "cc", moved)
    assert not reuses_analysis(Task(0, "/new.wav"), None, moved)
