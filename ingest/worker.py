"""Decode workers: hashing, tags, decoding, resampling and log-mel features.

Each worker is a separate process (so decoding runs on other cores while the main
process runs the network, and a decoder crash on a hostile file takes down one
worker, not the ingest). Workers never import torch. They stream a track as chunks
of features through a bounded queue, so a long track costs a few chunks of memory.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import stat
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catalog.records import AudioFacts, FileFacts
from embeddings.audio import NO_FINITE_SAMPLES, DecodeError, open_audio, silent_peak
from embeddings.frontend import FrontendConfig, StreamingSegmenter, segment_features
from embeddings.windows import analysis_windows
from ingest.busy_signal import Pacer
from ingest.hashing import NotRegularFile, content_hash, file_kind
from ingest.messages import Alive, Begin, Chunk, Done, Fail, Hashed, Message, Meta
from ingest.moves import reuses_analysis
from ingest.overview import OverviewBuilder, encode, overview_of_windows
from ingest.tags import read_tags
from ingest.windowed import WindowedReading, read_windows

CHUNK_SEGMENTS = 32
# A worker says it is alive at least this often while it decodes, so the main
# process can tell a long file streaming along from a decoder that hangs.
ALIVE_SECONDS = 5.0


@dataclass(frozen=True)
class Task:
    task_id: int
    path: str
    expected_hash: str | None = None  # this path's stored hash, if its analysis is reusable
    allow_move: bool = True  # may match a vanished track's hash (a moved file)
    # Analysis budget in seconds (evenly spread windows, see embeddings.windows);
    # None analyses the whole track.
    analysis_s: float | None = None


# What a worker sends the main process: the dataclasses of ingest/messages.py.


def inspect_path(path: Path) -> tuple[os.stat_result | None, str | None]:
    """What the file system says about ``path`` without opening it, and why it is unreadable.

    Returns (the stat the catalog keys the file on, a reason or None). Only regular
    files may be opened: opening a fifo for reading blocks until a writer comes, and
    a link to /dev/zero reads forever. For a dangling or looping symbolic link the
    link's own lstat is returned, so its failure can be recorded once and the next
    run's plan (which falls back to lstat too) sees it unchanged. ``None`` as the
    stat means nothing is there at all (the file vanished).
    """
    try:
        link = os.lstat(path)
    except OSError as exc:
        return None, f"cannot read file: {exc.strerror or exc}"
    try:
        target = os.stat(path)
    except OSError as exc:
        if stat.S_ISLNK(link.st_mode) and exc.errno == errno.ELOOP:
            return link, "symbolic link loop"
        if stat.S_ISLNK(link.st_mode) and exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return link, "broken symbolic link (its target does not exist)"
        return link, f"cannot read file: {exc.strerror or exc}"
    if not stat.S_ISREG(target.st_mode):
        return target, f"not a regular file: {file_kind(target.st_mode)}"
    return target, None


def _facts(path: Path, st: os.stat_result, content_hash: str | None) -> FileFacts:
    return FileFacts(
        path=str(path),
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        content_hash=content_hash,
        format=path.suffix.lower().lstrip(".") or None,
    )


def _throttled(every_s: float, call: Callable[[], None]) -> Callable[[], None]:
    """``call``, but at most once per ``every_s`` seconds however often it is invoked."""
    last = time.monotonic()

    def maybe() -> None:
        nonlocal last
        if time.monotonic() - last >= every_s:
            call()
            last = time.monotonic()

    return maybe


def file_facts(path: Path, with_hash: bool = True) -> FileFacts:
    """Size, mtime and (optionally) content hash; raises OSError if it is not a regular file."""
    st, problem = inspect_path(path)
    if problem is not None:
        raise NotRegularFile(errno.EINVAL, problem)
    return _facts(path, st, content_hash(path) if with_hash else None)


def analyse_file(
    task: Task,
    config: FrontendConfig,
    send: Callable[[Message], None],
    moved_hashes: frozenset[str] = frozenset(),
    pace: Callable[[], None] = lambda: None,
) -> None:
    """Run one task, reporting through ``send``; never raises for a bad file.

    ``moved_hashes`` are the content hashes of catalogued tracks whose files have
    vanished: a new path with one of them is a move, and needs no decoding.
    ``pace`` is called between short steps (a hashed megabyte, a decoded block, a
    feature chunk): a :class:`~ingest.busy_signal.Pacer` rests there while a
    ``sonic serve`` on the catalog is busy.
    """
    path = Path(task.path)
    st, problem = inspect_path(path)
    if problem is not None:
        if st is not None:  # something is there: record it once, with the stat to skip it by
            send(Hashed(task.task_id, _facts(path, st, None), False))
        send(Fail(task.task_id, problem))
        return
    say_alive = _throttled(ALIVE_SECONDS, lambda: send(Alive(task.task_id)))

    def alive() -> None:
        say_alive()
        pace()

    try:
        facts = _facts(path, st, content_hash(path, alive))
    except OSError as exc:
        send(Fail(task.task_id, f"cannot read file: {exc.strerror or exc}"))
        return
    reusable = reuses_analysis(task, facts.content_hash, moved_hashes)
    send(Hashed(task.task_id, facts, reusable))
    if reusable:
        return
    send(Meta(task.task_id, read_tags(path)))
    try:
        stream = open_audio(path, config.sample_rate)
    except DecodeError as exc:
        send(Fail(task.task_id, str(exc)))
        return
    except OSError as exc:
        send(Fail(task.task_id, f"cannot read file: {exc}"))
        return
    windows = analysis_windows(stream.info.duration_s, task.analysis_s, config.segment_seconds)
    if windows is not None:
        stream.blocks.close()
        reading = read_windows(path, config, windows, stream.info, alive)
        if reading.usable:
            _send_windows(task, config, send, reading, pace)
            return
        # The windows found no usable audio: see whether the whole track has some.
        try:
            stream = open_audio(path, config.sample_rate)
        except (DecodeError, OSError) as exc:
            send(Fail(task.task_id, f"cannot read file: {exc}"))
            return
    segmenter = StreamingSegmenter(config)
    overview = OverviewBuilder(config.sample_rate)
    peak = 0.0
    pending: list[np.ndarray] = []
    sent = 0

    def flush(force: bool) -> None:
        nonlocal pending, sent
        while pending and (force or sum(len(p) for p in pending) >= CHUNK_SEGMENTS):
            stacked = np.concatenate(pending)
            chunk, rest = stacked[:CHUNK_SEGMENTS], stacked[CHUNK_SEGMENTS:]
            pending = [rest] if len(rest) else []
            features = _features(chunk, config, pace)
            send(Chunk(task.task_id, sent, features))
            sent += len(chunk)
            pace()

    for block in stream.blocks:
        alive()
        if len(block):
            peak = max(peak, float(np.max(np.abs(block))))
            overview.push(block)
        segments = segmenter.push(block)
        if len(segments):
            pending.append(segments)
            flush(force=False)
    tail = segmenter.finish()
    if len(tail):
        pending.append(tail)
    flush(force=True)

    audio = AudioFacts(
        duration_s=stream.decoded_seconds,
        sample_rate=stream.info.sample_rate,
        channels=stream.info.channels,
    )
    repaired = stream.cleaning.note()
    if stream.frames_decoded == 0:
        reason = stream.stopped_early or "no audio frames could be decoded"
        send(Fail(task.task_id, f"no audio decoded ({reason})", audio))
    elif stream.cleaning.none_finite:
        send(Fail(task.task_id, NO_FINITE_SAMPLES, audio))
    elif silent := silent_peak(peak):
        send(Fail(task.task_id, f"{silent} ({repaired})" if repaired else silent, audio))
    else:
        notes = (_truncation_warning(stream), repaired, _short_warning(stream, config))
        warning = "; ".join(n for n in notes if n) or None
        send(Done(task.task_id, audio, sent, peak, warning, encode(overview.finish())))


def _features(segments: np.ndarray, config: FrontendConfig, pace: Callable[[], None]) -> np.ndarray:
    """``batch_features`` of a chunk as float16, with ``pace()`` after each segment.

    The same numbers as one ``batch_features`` call, but a chunk's 32 log-mel
    spectrograms are tens of milliseconds of CPU in one go; segment by segment, a
    worker yielding to a busy service rests after a few milliseconds instead.
    """
    out = np.empty((len(segments), *config.shape), dtype=np.float16)
    for i, segment in enumerate(segments):
        out[i] = segment_features(segment, config)
        pace()
    return out


def _send_windows(
    task: Task,
    config: FrontendConfig,
    send: Callable[[Message], None],
    reading: WindowedReading,
    pace: Callable[[], None] = lambda: None,
) -> None:
    """Send a budgeted track's segments (with where each starts) and its ending."""
    segments, starts = np.concatenate(reading.segments), np.concatenate(reading.starts)
    for first in range(0, len(segments), CHUNK_SEGMENTS):
        chunk = segments[first : first + CHUNK_SEGMENTS]
        features = _features(chunk, config, pace)
        send(Chunk(task.task_id, first, features, starts[first : first + CHUNK_SEGMENTS]))
        pace()
    audio = AudioFacts(
        duration_s=reading.duration_s(),
        sample_rate=reading.info.sample_rate,
        channels=reading.info.channels,
    )
    truncated = f"truncated or damaged: {reading.stopped_early}" if reading.stopped_early else None
    notes = (truncated, reading.cleaning.note())
    warning = "; ".join(n for n in notes if n) or None
    overview = overview_of_windows(
        segments, starts, config.sample_rate, audio.duration_s or reading.end_s
    )
    send(Done(task.task_id, audio, len(segments), reading.peak, warning, encode(overview)))


def _short_warning(stream, config: FrontendConfig) -> str | None:
    """Say how little there was when a file holds less than one full segment.

    Such a file is still indexed (a jingle, a sound effect), but its genre and its
    neighbours come from one segment that is mostly padding: the user should know
    not to trust them as much as a song's.
    """
    rate = stream.info.sample_rate
    if stream.frames_decoded >= config.segment_seconds * rate:
        return None
    if stream.frames_decoded < rate / 10:
        amount = f"{stream.frames_decoded:,} sample{'s' if stream.frames_decoded != 1 else ''}"
    else:
        amount = f"{stream.decoded_seconds:.1f} s"
    return (
        f"only {amount} of audio: the genre is a guess from one segment padded with "
        f"silence to {config.segment_seconds:g} s"
    )


def _truncation_warning(stream) -> str | None:
    """Say so when a file decodes to much less than it declares (a cut-off download)."""
    if stream.stopped_early:
        return f"truncated or damaged: {stream.stopped_early}"
    declared = stream.info.duration_s
    if declared and stream.decoded_seconds < 0.9 * declared - 1.0:
        return (
            f"truncated: decoded {stream.decoded_seconds:.1f} s of the "
            f"{declared:.1f} s the file declares"
        )
    return None


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_CHECK_SECONDS = 1.0


def die_with_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid`` does, however it ends.

    A parent killed outright (SIGKILL, the OOM killer) runs no cleanup, and its
    workers would go on decoding, then block forever on its queues. On Linux the
    kernel sends SIGKILL itself (PR_SET_PDEATHSIG); elsewhere, and as a fallback,
    a thread notices the parent's pid change (orphans are re-parented).
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no libc prctl: the thread below still works
            pass
    if os.getppid() != parent_pid:  # it died before we could ask to follow it
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_SECONDS)
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="sonic-parent-watch", daemon=True).start()


def worker_main(
    worker_id: int,
    config: dict,
    moved_hashes: frozenset[str],
    tasks,
    results,
    parent_pid: int | None = None,
    busy_dir: str | None = None,
) -> None:
    """Process entry point: take tasks until a ``None`` arrives.

    ``busy_dir``: the data directory whose ``sonic serve`` this worker yields to
    (``ingest.busy_signal``); None never yields (``--no-yield-to-service``). The
    network's rests alone do not reach a worker: it decodes at full speed until
    its results queue is full, in bursts as long as a whole track's features.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how to stop
    if parent_pid is not None:
        die_with_parent(parent_pid)
    frontend = FrontendConfig.from_dict(config)
    pace = Pacer.for_data_dir(busy_dir)
    while True:
        task = tasks.get()
        if task is None:
            return
        results.put(Begin(task.task_id, worker_id))
        try:
            analyse_file(task, frontend, results.put, moved_hashes, pace)
        except Exception as exc:  # a bug or a decoder surprise: record it, keep going
            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            results.put(Fail(task.task_id, f"analysis error: {detail}"))


def single_thread_env() -> dict[str, str]:
    """Environment for workers: one BLAS/OpenMP thread each, the cores are theirs."""
    env = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    return {**os.environ, **env}
