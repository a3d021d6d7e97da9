"""Remix station: mix a track's cached stems with per-stem gains into a new file.

Karaoke is vocals at gain 0; "solo the bass" is every other stem at 0. The stems
are read and mixed block by block, so a remix of an hour-long track costs a few
blocks of memory, like the separation that made them.

It sits in the stems package because it only ever reads what the stem cache wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from catalog.stems import StemSetRecord
from catalog.store import Catalog
from embeddings.audio import BLOCK_FRAMES
from ingest.stems.audio import FORMATS, StemFileWriter
from ingest.stems.cache import separate_track
from ingest.stems.separator import StemSeparator


class RemixError(ValueError):
    """Gains or stems that cannot be mixed (unknown stem, mismatched files)."""


@dataclass
class RemixResult:
    track_id: int
    path: Path
    gains: dict[str, float]
    sample_rate: int
    frames: int
    stems_cached: bool

    def to_dict(self) -> dict:
        return {
            "track_id": self.track_id,
            "path": str(self.path),
            "gains": self.gains,
            "sample_rate": self.sample_rate,
            "frames": self.frames,
            "duration_s": self.frames / self.sample_rate if self.sample_rate else None,
            "stems_cached": self.stems_cached,
        }


def resolve_gains(
    stems: list[str],
    gains: dict[str, float] | None = None,
    solo: list[str] | None = None,
    mute: list[str] | None = None,
) -> dict[str, float]:
    """Every stem's gain: 1 unless given; ``solo`` silences the rest, ``mute`` silences these.

    ``mute=["vocals"]`` is karaoke; ``solo=["bass"]`` keeps only the bass.
    """
    named = dict(gains or {})
    for name in [*named, *(solo or []), *(mute or [])]:
        if name not in stems:
            raise RemixError(f"unknown stem {name!r}; the stems are {', '.join(stems)}")
    result = {name: 1.0 for name in stems}
    if solo:
        result = {name: (1.0 if name in solo else 0.0) for name in stems}
    result.update({name: float(g) for name, g in named.items()})
    for name in mute or []:
        result[name] = 0.0
    return result


def _gains_slug(gains: dict[str, float]) -> str:
    return "_".join(f"{name}{gain:g}" for name, gain in sorted(gains.items()))


def mix_stems(
    record: StemSetRecord, gains: dict[str, float], out_path: Path, format: str | None = None
) -> int:
    """Write sum(gain * stem) to ``out_path``; returns the frames written."""
    format = format or out_path.suffix.lstrip(".").lower() or record.format or "flac"
    if format not in FORMATS:
        raise RemixError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    missing = record.missing_files()
    if missing:
        raise RemixError(f"stem file(s) missing on disk: {', '.join(missing)}")
    active = {name: gain for name, gain in gains.items() if name in record.stems}
    handles = {name: sf.SoundFile(str(record.stems[name])) for name in record.stems}
    try:
        first = next(iter(handles.values()))
        rate, channels = first.samplerate, first.channels
        if any((h.samplerate, h.channels) != (rate, channels) for h in handles.values()):
            raise RemixError("the stem files disagree on sample rate or channels")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        partial = out_path.with_name(f".{out_path.name}.partial")
        writer = StemFileWriter({"mix": partial}, rate, channels, format)
        try:
            while True:
                mixed = None
                longest = 0
                for name, handle in handles.items():
                    block = handle.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                    longest = max(longest, len(block))
                    gain = active.get(name, 1.0)
                    if gain == 0.0 or len(block) == 0:
                        continue
                    scaled = block * np.float32(gain) if gain != 1.0 else block
                    if mixed is None:
                        mixed = np.zeros((BLOCK_FRAMES, channels), dtype=np.float32)
                    mixed[: len(scaled)] += scaled
                if longest == 0:
                    break
                if mixed is None:
                    mixed = np.zeros((longest, channels), dtype=np.float32)
                writer.write({"mix": mixed[:longest]})
            frames = writer.close()
        except BaseException:
            writer.abort()
            partial.unlink(missing_ok=True)
            raise
        partial.replace(out_path)
        return frames
    finally:
        for handle in handles.values():
            handle.close()


def remix_track(
    catalog: Catalog,
    track_id: int,
    separator: StemSeparator,
    gains: dict[str, float] | None = None,
    solo: list[str] | None = None,
    mute: list[str] | None = None,
    out_path: Path | None = None,
    format: str | None = None,
) -> RemixResult:
    """Mix a track's stems (separating first unless cached) into a new file.

    Without ``out_path`` the remix goes beside the stems in the data directory
    (``remixes/<gains>.<format>``), where the service may serve it from.
    """
    stems = separate_track(catalog, track_id, separator)
    record = stems.record
    resolved = resolve_gains(sorted(record.stems), gains, solo, mute)
    fmt = format or (out_path.suffix.lstrip(".").lower() if out_path else None) or "flac"
    if out_path is None:
        out_path = record.directory / "remixes" / f"{_gains_slug(resolved)}.{fmt}"
    frames = mix_stems(record, resolved, Path(out_path), fmt)
    return RemixResult(
        track_id, Path(out_path), resolved, record.sample_rate or 0, frames, stems.cached
    )


# -- an in-memory preview mix for the web interface -----------------------------------------
# The UI plays a remix without writing a file: the stems are mixed into one array,
# bounded to MAX_REMIX_SECONDS so a long track cannot exhaust the service's memory.

MAX_REMIX_SECONDS = 600.0


def preview_mix(
    stems: dict[str, Path], gains: dict[str, float], max_seconds: float = MAX_REMIX_SECONDS
) -> tuple[int, np.ndarray]:
    """Sum the stems, each scaled by its gain (default 1), as (rate, frames x channels).

    Stems of one set share rate, channel count and length; the mix is limited to
    ``max_seconds`` and scaled down if it would clip.
    """
    if not stems:
        raise ValueError("no stems to mix")
    mix: np.ndarray | None = None
    rate = None
    for name, path in sorted(stems.items()):
        gain = float(gains.get(name, 1.0))
        with sf.SoundFile(str(path)) as fh:
            if rate is None:
                rate = fh.samplerate
            elif fh.samplerate != rate:
                raise ValueError(f"stem {name} is at {fh.samplerate} Hz, the others at {rate}")
            data = fh.read(int(max_seconds * fh.samplerate), dtype="float32", always_2d=True)
        if gain == 0.0:
            data = np.zeros_like(data)
        if mix is None:
            mix = data * gain
        else:
            n = min(len(mix), len(data))
            channels = max(mix.shape[1], data.shape[1])
            mix = _channels(mix[:n], channels) + _channels(data[:n], channels) * gain
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    if peak > 1.0:
        mix = mix / peak
    return int(rate), mix.astype(np.float32)


def _channels(data: np.ndarray, channels: int) -> np.ndarray:
    return data if data.shape[1] == channels else np.repeat(data[:, :1], channels, axis=1)
