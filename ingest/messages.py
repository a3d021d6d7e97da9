"""What a decode worker tells the main process about a task, one dataclass per kind.

They cross a process boundary (a multiprocessing queue), so they are small, frozen
and picklable. A task's messages arrive in this order: :class:`Begin`, any number
of :class:`Alive`, :class:`Hashed`, then either nothing more (the stored analysis
stands), or :class:`Meta`, :class:`Chunk` s and one :class:`Done` or
:class:`Fail`. A :class:`Fail` may come at any point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from catalog.records import AudioFacts, FileFacts, Tags


@dataclass(frozen=True, slots=True)
class Begin:
    """Worker ``worker_id`` took the task (so its stall clock and crash are this task's)."""

    task_id: int
    worker_id: int


@dataclass(frozen=True, slots=True)
class Alive:
    """Still working on it: hashing or decoding a long file."""

    task_id: int


@dataclass(frozen=True, slots=True)
class Hashed:
    """The file's facts; ``reusable``: its stored (or a moved track's) analysis stands."""

    task_id: int
    facts: FileFacts
    reusable: bool


@dataclass(frozen=True, slots=True)
class Meta:
    """The file's tags."""

    task_id: int
    tags: Tags


@dataclass(frozen=True, slots=True)
class Chunk:
    """Log-mel features of segments ``first`` onwards, float16 (n, n_mels, frames).

    ``starts``: where each of these segments starts in the track, in seconds (n,),
    when the analysis budget picked spread windows; None when the segments are
    consecutive from the start of the track.
    """

    task_id: int
    first: int
    features: np.ndarray
    starts: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class Done:
    """Decoding finished: ``n_segments`` were sent as chunks.

    ``overview``: the waveform overview the UI draws (:mod:`ingest.overview`,
    encoded), or None when there is none.
    """

    task_id: int
    audio: AudioFacts
    n_segments: int
    peak: float
    warning: str | None
    overview: bytes | None = None


@dataclass(frozen=True, slots=True)
class Fail:
    """The task failed for ``reason`` (what was learnt of the audio, if anything)."""

    task_id: int
    reason: str
    audio: AudioFacts | None = None


Message = Begin | Alive | Hashed | Meta | Chunk | Done | Fail


def ends_decoding(message: Message) -> bool:
    """Whether the worker is done with the task (it takes the next one)."""
    return isinstance(message, Done | Fail) or (isinstance(message, Hashed) and message.reusable)
