"""Stem separation with Demucs, streamed in bounded memory, with a cache the catalog keeps.

Why streamed: ``demucs.apply.apply_model`` on a whole track holds the track and
four full-length stems in memory (about 40 bytes per stereo frame: 1.6 GB for a
ten-minute song, 10 GB for an hour-long mix). :class:`SplitStream` runs exactly
Demucs' own split instead (segment-long chunks, triangular crossfade weights,
``overlap``), one chunk at a time over a sliding buffer, each chunk through
``apply_model(..., split=False)``; finished samples go to the stem files as soon
as no later chunk touches them. Memory is a few segments whatever the track's
length, and the output equals what ``apply_model`` on the whole track returns.

Why cached by content: the cache key is (audio content hash, model name, settings
hash). A moved, renamed or copied file finds its stems; an edited file does not;
a stem file deleted from disk is noticed and the set recomputed. Cache hits never
load the model.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from demucs.apply import BagOfModels, TensorChunk, apply_model
from demucs.htdemucs import HTDemucs

from catalog.schema import StemStatus
from catalog.stems import (
    StemKey,
    StemSetRecord,
    StemTarget,
    delete_stem_sets,
    get_stem_set,
    known_directories,
    orphaned_stem_sets,
    save_stem_failure,
    save_stem_set,
    stem_target,
    stem_targets,
)
from catalog.store import Catalog
from ingest.decode import DecodeError
from ingest.hashing import content_hash
from ingest.stem_audio import FORMATS, BlockResampler, StemFileWriter, open_blocks

MODELS_DIR_ENV = "SONIC_DEMUCS_DIR"
DEFAULT_MODEL = "htdemucs"
# Bump when a change to this module changes the stems written for the same settings.
PIPELINE_VERSION = 1

Progress = Callable[[float, float | None], None]  # (source seconds done, total or None)


class StemWeightsError(RuntimeError):
    """No Demucs weights could be loaded; the message names every way to provide them."""


class StemSeparationError(RuntimeError):
    """Separating one track failed (the failure is recorded in the catalog)."""


class StemsNotAvailable(LookupError):
    """The track cannot be separated now (its file is gone and no stems are cached)."""


# -- settings and the cache key ---------------------------------------------------------


@dataclass(frozen=True)
class StemSettings:
    """Everything that changes the stem files; all of it goes into the cache key.

    ``device`` is deliberately absent: CPU and GPU give the same stems.
    """

    model: str = DEFAULT_MODEL
    segment: float | None = None  # seconds per chunk; None: the model's own (7.8 s)
    overlap: float = 0.25  # fraction of a chunk shared with the next (Demucs' default)
    shifts: int = 1  # random time shifts averaged (Demucs' default; 0 = deterministic)
    format: str = "flac"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if not 0 <= self.overlap < 1:
            raise ValueError("overlap must be in [0, 1)")
        if self.shifts < 0:
            raise ValueError("shifts must be 0 or more")
        if self.segment is not None and self.segment <= 0:
            raise ValueError("segment must be positive")

    def key_settings(self) -> dict:
        """The settings hashed into the key (the model name is a key column of its own)."""
        data = asdict(self)
        del data["model"]
        data["pipeline"] = PIPELINE_VERSION
        return data

    @property
    def settings_hash(self) -> str:
        text = json.dumps(self.key_settings(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def key(self, audio_hash: str) -> StemKey:
        return StemKey(audio_hash, self.model, self.settings_hash)


def stem_directory(catalog: Catalog, key: StemKey) -> Path:
    """``stems/<hash[:2]>/<hash>/<model>-<settings>``: by content, never by track or name."""
    model = re.sub(r"[^A-Za-z0-9_.-]+", "_", key.model).strip("._") or "model"
    return (
        catalog.paths.stems
        / key.content_hash[:2]
        / key.content_hash
        / f"{model}-{key.settings_hash}"
    )


# -- the model --------------------------------------------------------------------------


def pick_device(requested: str | None = "auto") -> torch.device:
    """The GPU when present unless the caller asks otherwise."""
    if requested and requested != "auto":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _weights_help(name: str) -> str:
    return (
        f"Either let Demucs download '{name}' once and cache it (needs network; kept in "
        "the torch hub / HuggingFace cache), or put Demucs checkpoints (the model's "
        f"'{name}.yaml' and the '<signature>.th' files it lists) in a folder and pass "
        f"--models-dir PATH or set {MODELS_DIR_ENV}=PATH."
    )


def load_demucs_model(name: str = DEFAULT_MODEL, models_dir: Path | None = None):
    """Demucs model or bag of models, from ``models_dir`` / $SONIC_DEMUCS_DIR or Demucs' cache.

    Raises :class:`StemWeightsError` (naming both ways to provide weights) when none load.
    """
    from demucs.pretrained import get_model

    folder = models_dir or (
        Path(os.environ[MODELS_DIR_ENV]) if os.environ.get(MODELS_DIR_ENV) else None
    )
    if folder is not None:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise StemWeightsError(
                f"no Demucs weights for '{name}': the models folder {folder} does not exist. "
                + _weights_help(name)
            )
    try:
        model = get_model(name, repo=folder) if folder is not None else get_model(name)
    except (Exception, SystemExit) as exc:  # demucs calls sys.exit() on some load errors
        where = f"in {folder}" if folder is not None else "from Demucs' download or cache"
        reason = str(exc).strip() or type(exc).__name__
        raise StemWeightsError(
            f"no Demucs weights for '{name}' {where} ({reason}). " + _weights_help(name)
        ) from None
    model.eval()
    return model


def model_segment(model) -> float:
    """Seconds per chunk the model runs on (the shortest of a bag's models)."""
    models = list(model.models) if isinstance(model, BagOfModels) else [model]
    return min(float(m.segment) for m in models)


def _check_segment(model, segment: float | None) -> None:
    if segment is None:
        return
    models = list(model.models) if isinstance(model, BagOfModels) else [model]
    limit = min((float(m.segment) for m in models if isinstance(m, HTDemucs)), default=None)
    if limit is not None and segment > limit:
        raise ValueError(f"segment {segment} s is longer than this model's {limit:.2f} s")


# -- streaming split ---------------------------------------------------------------------


class SplitStream:
    """Demucs' ``apply_model(split=True)`` over a stream, one chunk in memory at a time.

    Mirrors the split loop of ``demucs.apply.apply_model``: chunks of ``segment``
    seconds every ``(1 - overlap) * segment`` seconds, each weighted by the same
    triangle and summed, then divided by the summed weights. A sample is final once
    the next chunk starts after it, so it is handed out then. ``prefix`` zero frames
    are fed first and their output dropped: that is how one random shift of Demucs'
    shift trick looks on a stream.
    """

    def __init__(
        self,
        run_chunk: Callable[[TensorChunk], torch.Tensor],
        segment_length: int,
        overlap: float,
        sources: int,
        channels: int,
        device: torch.device,
        prefix: int = 0,
        transition_power: float = 1.0,
    ) -> None:
        self.run_chunk = run_chunk
        self.length = segment_length
        self.stride = int((1 - overlap) * segment_length)
        if self.stride <= 0:
            raise ValueError("overlap leaves no stride between chunks")
        half = segment_length // 2
        weight = torch.cat(
            [
                torch.arange(1, half + 1, device=device),
                torch.arange(segment_length - half, 0, -1, device=device),
            ]
        )
        self.weight = (weight / weight.max()) ** transition_power
        self.channels = channels
        self.buffer = torch.zeros(1, channels, 0)
        self.buffer_start = 0  # stream position of buffer[..., 0]
        self.total: int | None = None  # stream length, once the input ended
        self.next_offset = 0
        self.acc = torch.zeros(1, sources, channels, 0)
        self.weights = torch.zeros(0)
        self.acc_start = 0  # stream position of acc[..., 0]: everything before is handed out
        self.drop = prefix
        if prefix:
            self.buffer = torch.zeros(1, channels, prefix)

    @property
    def buffer_end(self) -> int:
        return self.buffer_start + self.buffer.shape[-1]

    def push(self, block: torch.Tensor) -> list[torch.Tensor]:
        """Feed (channels, n) input; returns finished (sources, channels, m) output."""
        self.buffer = torch.cat([self.buffer, block[None]], dim=-1)
        return self._run()

    def finish(self) -> list[torch.Tensor]:
        """The input ended: run the last chunks and hand out the rest."""
        self.total = self.buffer_end
        return self._run()

    def _run(self) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        while True:
            offset = self.next_offset
            if self.total is not None:
                if offset >= self.total:
                    break
            elif self.buffer_end < offset + self.length:
                break  # wait for more input
            chunk = TensorChunk(self.buffer, offset - self.buffer_start, self.length)
            result = self.run_chunk(chunk)
            n = result.shape[-1]
            self._accumulate(offset, (self.weight[:n] * result).to("cpu"), self.weight[:n].cpu())
            self.next_offset += self.stride
            ready = self.next_offset if self.total is None else min(self.next_offset, self.total)
            finished = self._emit(ready)
            if finished is not None:
                out.append(finished)
            self._trim_buffer()
        return out

    def _accumulate(self, offset: int, weighted: torch.Tensor, weight: torch.Tensor) -> None:
        start = offset - self.acc_start
        end = start + weighted.shape[-1]
        grow = end - self.acc.shape[-1]
        if grow > 0:
            self.acc = torch.cat([self.acc, self.acc.new_zeros(*self.acc.shape[:-1], grow)], -1)
            self.weights = torch.cat([self.weights, self.weights.new_zeros(grow)])
        self.acc[..., start:end] += weighted
        self.weights[start:end] += weight

    def _emit(self, ready: int) -> torch.Tensor | None:
        n = ready - self.acc_start
        if n <= 0:
            return None
        finished = self.acc[0, ..., :n] / self.weights[:n]
        self.acc = self.acc[..., n:].clone()
        self.weights = self.weights[n:].clone()
        self.acc_start = ready
        if self.drop:
            cut = min(self.drop, n)
            finished = finished[..., cut:]
            self.drop -= cut
        return finished if finished.shape[-1] else None

    def _trim_buffer(self) -> None:
        # The last (short) chunk is centred with context from up to half a segment
        # before it, so keep one segment of history before the next chunk.
        keep_from = max(self.buffer_start, self.next_offset - self.length)
        if keep_from > self.buffer_start:
            self.buffer = self.buffer[..., keep_from - self.buffer_start :].clone()
            self.buffer_start = keep_from


class ShiftedSplit:
    """Demucs' shift trick on a stream: ``shifts`` split streams, each delayed at random.

    ``apply_model(shifts=N)`` pads the track by half a second, runs the split on N
    randomly offset views and averages them aligned; here each view is a
    :class:`SplitStream` fed a random number of leading zeros, and the outputs are
    averaged as they become available. ``shifts=0`` is a single undelayed stream.
    """

    def __init__(self, make_stream: Callable[[int], SplitStream], shifts: int, max_shift: int):
        if shifts == 0:
            self.streams = [make_stream(0)]
            self.divide = None
        else:
            # Same draws, in the same order, as apply_model's shift loop.
            offsets = [random.randint(0, max_shift) for _ in range(shifts)]
            self.streams = [make_stream(max_shift - offset) for offset in offsets]
            self.divide = shifts
        self.pending: list[deque[torch.Tensor]] = [deque() for _ in self.streams]

    def push(self, block: torch.Tensor) -> list[torch.Tensor]:
        for stream, pending in zip(self.streams, self.pending, strict=True):
            pending.extend(stream.push(block))
        return self._combine()

    def finish(self) -> list[torch.Tensor]:
        for stream, pending in zip(self.streams, self.pending, strict=True):
            pending.extend(stream.finish())
        return self._combine()

    def _combine(self) -> list[torch.Tensor]:
        if self.divide is None:
            out = list(self.pending[0])
            self.pending[0].clear()
            return out
        available = min(sum(t.shape[-1] for t in p) for p in self.pending)
        if available == 0:
            return []
        total: torch.Tensor | float = 0.0
        for pending in self.pending:
            total = total + _take(pending, available)
        return [total / self.divide]


def _take(pending: deque[torch.Tensor], n: int) -> torch.Tensor:
    parts = []
    while n:
        head = pending.popleft()
        if head.shape[-1] > n:
            pending.appendleft(head[..., n:])
            head = head[..., :n]
        parts.append(head)
        n -= head.shape[-1]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


# -- separating one file ------------------------------------------------------------------


@dataclass
class SeparatedFile:
    stems: dict[str, Path]
    sample_rate: int
    channels: int
    frames: int
    seconds: float


class StemSeparator:
    """Runs one Demucs model over files; the model is loaded on first use only.

    ``model`` may be given directly (tests, benchmarks); otherwise it is loaded by
    name from ``models_dir`` / $SONIC_DEMUCS_DIR, else Demucs' own download and cache.
    """

    def __init__(
        self,
        settings: StemSettings | None = None,
        models_dir: Path | None = None,
        device: str | None = "auto",
        model=None,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings or StemSettings()
        self.models_dir = models_dir
        self.device = pick_device(device)
        self._model = model
        self._ready = False  # model placed on the device and settings checked
        self.progress = progress
        self.chunks_run = 0  # model calls, for tests and reports

    @property
    def model(self):
        if self._model is None:
            self._model = load_demucs_model(self.settings.model, self.models_dir)
        if not self._ready:
            self._model.to(self.device).eval()
            _check_segment(self._model, self.settings.segment)
            self._ready = True
        return self._model

    @property
    def sources(self) -> list[str]:
        return list(self.model.sources)

    def _run_chunk(self, chunk: TensorChunk) -> torch.Tensor:
        self.chunks_run += 1
        out = apply_model(
            self.model, chunk, shifts=0, split=False, segment=self.settings.segment,
            device=self.device,
        )  # fmt: skip
        return out[0]

    def separate_file(self, path: Path, out_dir: Path) -> SeparatedFile:
        """Separate ``path`` into ``out_dir/<stem>.<format>`` at the file's own rate and length."""
        started = time.perf_counter()
        model = self.model
        rate, channels = int(model.samplerate), int(model.audio_channels)
        sources = list(model.sources)
        segment = self.settings.segment or model_segment(model)
        audio = open_blocks(path, channels)
        ext = self.settings.format
        paths = {name: Path(out_dir) / f"{name}.{ext}" for name in sources}
        writer = StemFileWriter(paths, audio.sample_rate, channels, self.settings.format)
        to_model = BlockResampler(audio.sample_rate, rate, channels)
        from_model = BlockResampler(rate, audio.sample_rate, len(sources) * channels)
        splitter = ShiftedSplit(
            lambda prefix: SplitStream(
                self._run_chunk, int(rate * segment), self.settings.overlap, len(sources),
                channels, self.device, prefix=prefix,
            ),
            self.settings.shifts,
            int(0.5 * rate),
        )  # fmt: skip
        total_s = audio.frames / audio.sample_rate if audio.frames else None
        decoded = 0

        def write(outputs: list[torch.Tensor], last: bool = False) -> None:
            for out in outputs:
                # (sources, channels, n) -> (n, sources * channels) for one resampler
                frames = out.reshape(len(sources) * channels, -1).T.numpy()
                self._write(writer, sources, channels, from_model(frames))
            if last:
                tail = from_model(np.zeros((0, len(sources) * channels), np.float32), last=True)
                self._write(writer, sources, channels, tail)

        try:
            with torch.no_grad():  # inference_mode measured ~130 MB higher peak RSS
                for block in audio.blocks:
                    decoded += len(block)
                    resampled = to_model(block)
                    if len(resampled):
                        write(splitter.push(torch.from_numpy(resampled.T.copy())))
                    if self.progress:  # stems written so far: the separation's own pace
                        self.progress(writer.written / audio.sample_rate, total_s)
                tail = to_model(np.zeros((0, channels), np.float32), last=True)
                if len(tail):
                    write(splitter.push(torch.from_numpy(tail.T.copy())))
                if decoded == 0:
                    raise DecodeError("no audio frames in the file")
                writer.limit = decoded
                write(splitter.finish(), last=True)
            frames = writer.close()
            if self.progress:
                self.progress(frames / audio.sample_rate, total_s or frames / audio.sample_rate)
        except BaseException:
            writer.abort()
            raise
        return SeparatedFile(
            paths, audio.sample_rate, channels, frames, time.perf_counter() - started
        )

    @staticmethod
    def _write(writer: StemFileWriter, sources: list[str], channels: int, frames: np.ndarray):
        if len(frames):
            writer.write(
                {
                    name: frames[:, i * channels : (i + 1) * channels]
                    for i, name in enumerate(sources)
                }
            )


# -- the cache --------------------------------------------------------------------------------


@dataclass
class StemResult:
    """Stems of one track: where they are and whether the cache already had them."""

    track_id: int
    record: StemSetRecord
    cached: bool
    recomputed_because: str | None = None  # e.g. a stem file was deleted

    def to_dict(self) -> dict:
        return {
            "track_id": self.track_id,
            "cached": self.cached,
            "recomputed_because": self.recomputed_because,
            **self.record.to_dict(),
        }


def current_hash(target: StemTarget) -> str:
    """The audio's content hash now: the stored one while size and mtime are unchanged.

    Re-hashing only when the file changed keeps a cache hit cheap, and still sends an
    edited file (new mtime or size) to a new key. A vanished file keeps its stored
    hash, so its cached stems stay reachable.
    """
    path = Path(target.path)
    try:
        stat = path.stat()
    except OSError:
        if target.content_hash:
            return target.content_hash
        raise StemsNotAvailable(f"{target.path} is missing and was never hashed") from None
    if target.content_hash and (stat.st_size, stat.st_mtime_ns) == (target.size, target.mtime_ns):
        return target.content_hash
    return content_hash(path)


def cached_stems(catalog: Catalog, key: StemKey) -> tuple[StemSetRecord | None, str | None]:
    """The usable cached set for ``key``, or None and why it is not usable."""
    record = get_stem_set(catalog, key)
    if record is None:
        return None, None
    if record.status != StemStatus.OK:
        return None, f"previous attempt failed: {record.error}"
    missing = record.missing_files()
    if missing:
        return None, f"stem file(s) missing on disk: {', '.join(missing)}"
    return record, None


@contextmanager
def _key_lock(directory: Path) -> Iterator[None]:
    """One separation per key at a time across processes; the others then hit the cache."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def separate_track(
    catalog: Catalog, track_id: int, separator: StemSeparator, force: bool = False
) -> StemResult:
    """Stems of one catalogued track: from the cache, else separated, written and recorded.

    A failure other than missing weights is recorded against the key and raised as
    :class:`StemSeparationError`.
    """
    target = stem_target(catalog, track_id)
    settings = separator.settings
    key = settings.key(current_hash(target))
    record, why = (None, "forced") if force else cached_stems(catalog, key)
    if record is not None:
        return StemResult(track_id, record, cached=True)
    if not Path(target.path).is_file():
        raise StemsNotAvailable(
            f"{target.path} is missing and no stems are cached for its audio; "
            "re-ingest the library if it moved"
        )
    directory = stem_directory(catalog, key)
    with _key_lock(directory):
        if not force:  # another process may have finished it while we waited
            record, _ = cached_stems(catalog, key)
            if record is not None:
                return StemResult(track_id, record, cached=True)
        partial = directory / f".partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            result = separator.separate_file(Path(target.path), partial)
            stems = {}
            for name, path in result.stems.items():
                final = directory / path.name
                os.replace(path, final)
                stems[name] = final
        except StemWeightsError:
            raise
        except Exception as exc:
            reason = (
                f"{type(exc).__name__}: {exc}" if not isinstance(exc, DecodeError) else str(exc)
            )
            save_stem_failure(catalog, key, settings.key_settings(), reason)
            raise StemSeparationError(f"{target.path}: {reason}") from exc
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        record = save_stem_set(
            catalog, key, settings.key_settings(), directory, stems,
            format=settings.format, sample_rate=result.sample_rate, channels=result.channels,
            frames=result.frames, device=str(separator.device), compute_seconds=result.seconds,
        )  # fmt: skip
    return StemResult(track_id, record, cached=False, recomputed_because=why)


# -- batches and pruning -----------------------------------------------------------------------


@dataclass
class BatchSummary:
    tracks: int = 0
    separated: int = 0
    cached: int = 0
    skipped_failed: int = 0  # failed before; not retried without --retry-failed
    failed: list[tuple[int, str, str]] = field(default_factory=list)  # (id, path, reason)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "tracks": self.tracks,
            "separated": self.separated,
            "cached": self.cached,
            "skipped_failed": self.skipped_failed,
            "failed": [{"track_id": i, "path": p, "reason": r} for i, p, r in self.failed],
            "audio_hours": self.audio_seconds / 3600,
            "wall_seconds": self.wall_seconds,
        }


class BatchProgress:
    """What :func:`separate_many` reports to; the CLI plugs a progress bar in."""

    def start(self, total_tracks: int) -> None: ...
    def track(self, target: StemTarget) -> None: ...
    def advance(self, result: StemResult | None, error: str | None = None) -> None: ...
    def close(self) -> None: ...


def separate_many(
    catalog: Catalog,
    separator: StemSeparator,
    genre: str | None = None,
    retry_failed: bool = False,
    progress: BatchProgress | None = None,
) -> BatchSummary:
    """Stems for every present track (of one genre); a bad track is recorded and skipped.

    Missing weights stop the batch (every track would fail the same way).
    """
    started = time.monotonic()
    progress = progress or BatchProgress()
    targets = stem_targets(catalog, genre)
    summary = BatchSummary(tracks=len(targets))
    progress.start(len(targets))
    try:
        for target in targets:
            progress.track(target)
            try:
                key = separator.settings.key(current_hash(target))
                previous = get_stem_set(catalog, key)
                if (
                    previous is not None
                    and previous.status == StemStatus.FAILED
                    and not retry_failed
                ):
                    summary.skipped_failed += 1
                    progress.advance(None, previous.error)
                    continue
                result = separate_track(catalog, target.track_id, separator)
            except StemWeightsError:
                raise
            except (StemSeparationError, StemsNotAvailable, OSError) as exc:
                summary.failed.append((target.track_id, target.path, str(exc)))
                progress.advance(None, str(exc))
                continue
            if result.cached:
                summary.cached += 1
            else:
                summary.separated += 1
                summary.audio_seconds += (result.record.frames or 0) / (
                    result.record.sample_rate or 1
                )
            progress.advance(result)
    finally:
        progress.close()
    summary.wall_seconds = time.monotonic() - started
    return summary


def prune_stems(catalog: Catalog, keep_missing: bool = False, dry_run: bool = False) -> dict:
    """Drop stems of audio no longer in the library, and stem folders nothing records.

    Folders locked by a running separation are left alone.
    """
    orphans = orphaned_stem_sets(catalog, keep_missing=keep_missing)
    freed = 0
    removed_dirs: list[str] = []
    for record in orphans:
        if record.directory is not None and record.directory.exists():
            freed += _size(record.directory)
            removed_dirs.append(str(record.directory))
            if not dry_run:
                shutil.rmtree(record.directory, ignore_errors=True)
    if not dry_run:
        delete_stem_sets(catalog, [r.id for r in orphans])
    known = known_directories(catalog)
    unrecorded: list[str] = []
    root = catalog.paths.stems
    for directory in sorted(root.glob("*/*/*")) if root.is_dir() else []:
        if not directory.is_dir() or str(directory) in removed_dirs or _busy(directory):
            continue
        if directory in known:  # keep it, but not what a killed separation left behind
            for partial in directory.glob(".partial-*"):
                freed += _size(partial)
                if not dry_run:
                    shutil.rmtree(partial, ignore_errors=True)
            continue
        freed += _size(directory)
        unrecorded.append(str(directory))
        if not dry_run:
            shutil.rmtree(directory, ignore_errors=True)
    if not dry_run and root.is_dir():
        for parent in sorted(root.glob("*/*"), reverse=True) + sorted(root.glob("*")):
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
    return {
        "dry_run": dry_run,
        "stem_sets_removed": len(orphans),
        "unrecorded_folders_removed": len(unrecorded),
        "bytes_freed": freed,
        "removed": [
            r.to_dict() | {"directory": str(r.directory) if r.directory else None} for r in orphans
        ],
        "unrecorded_folders": unrecorded,
    }


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def _busy(directory: Path) -> bool:
    lock = directory / ".lock"
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
