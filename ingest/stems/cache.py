"""The stem cache: look up by content, separate once per key, batches and pruning.

Why cached by content: the cache key is (audio content hash, model name, settings
hash). A moved, renamed or copied file finds its stems; an edited file does not;
a stem file deleted from disk is noticed and the set recomputed. Cache hits never
load the model. Why batches and pruning live here too: both are loops over the
same key lookup and folder layout, with the same per-key lock that lets several
processes share one cache.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

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
from embeddings.audio import DecodeError
from ingest.hashing import content_hash
from ingest.stems.separator import StemSeparator
from ingest.stems.settings import (
    StemSeparationError,
    StemsNotAvailable,
    StemWeightsError,
    stem_directory,
)


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
    :class:`StemSeparationError`. What is not an ``Exception`` (Ctrl-C, a job's
    cancellation raised from a progress callback) is no failure of the audio: it
    records nothing, and the partial files are removed, so no half set passes for
    the track's stems and the next request separates afresh.
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
    """What one batch did, for the CLI's summary and its ``--json``."""

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
