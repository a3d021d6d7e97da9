"""Folder-per-genre training data: discovery, decoding and a feature cache.

A dataset is a folder whose sub-folders are genres and whose audio files inside
them are tracks (the GTZAN layout, or a user's own ``rnb/``, ``afrobeat/`` ...).
Loose files beside the genre folders (GTZAN ships ``*.mf`` lists and a README) are
ignored, and so are genre folders without audio.

Decoding and the front end are the slow part of training on CPU, and every fold of
a cross-validation needs the same features, so each track's features are computed
once and cached on disk, keyed by the file's path, size and modification time and
by the front-end parameters. What is cached per track:

- ``log_power``: the whole clip's mel spectrogram in dB *before* referencing and
  normalisation, so a random 3-second crop can be cut out and normalised exactly
  as :func:`embeddings.frontend.segment_features` would (see ``augment.crop``);
- ``segments``: the clip cut by :func:`embeddings.frontend.split_segments` and run
  through the front end, i.e. precisely what ingest feeds the model, so that
  clip-level evaluation measures the path users run;
- optionally the 57 handcrafted features for the classical baselines;
- for self-supervised pretraining (:meth:`FeatureCache.excerpt`), only the
  ``log_power`` of an excerpt of at most ``max_seconds`` from a seeded offset,
  in fp16, so that a corpus of long tracks stays small in memory.

Files are found and read by :mod:`embeddings.audio`, the audio layer ingest also
uses (the same extensions, walk and decoders), so a model learns from the same
files and samples it will be fed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embeddings.atomic import atomic_write
from embeddings.audio import AUDIO_EXTENSIONS as AUDIO_EXTENSIONS  # ingest's very list
from embeddings.audio import (
    DecodeError,
    audio_files_in,
    audio_info,
    failure_reason,
    read_audio,
    silence_reason,
)
from embeddings.frontend import FrontendConfig, batch_features, power_mel, split_segments

CACHE_VERSION = 1
AMIN = 1e-10


@dataclass(frozen=True)
class Track:
    """One labelled audio file; ``key`` (``genre/file``) identifies it in splits."""

    path: Path
    genre: str
    key: str


@dataclass
class Dataset:
    root: Path
    genres: list[str]
    tracks: list[Track]

    @property
    def labels(self) -> np.ndarray:
        index = {g: i for i, g in enumerate(self.genres)}
        return np.array([index[t.genre] for t in self.tracks], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(self.genres, 0)
        for t in self.tracks:
            out[t.genre] += 1
        return out

    def without(self, keys: set[str]) -> Dataset:
        """The dataset minus the tracks ``keys`` (files that could not be read).

        A genre left with no tracks is dropped rather than trained as an empty
        class; fewer than two left is an error, as in :func:`discover`.
        """
        tracks = [t for t in self.tracks if t.key not in keys]
        genres = [g for g in self.genres if any(t.genre == g for t in tracks)]
        if len(genres) < 2:
            raise ValueError(
                f"only {len(genres)} genre(s) of {self.root} have readable audio "
                f"after skipping {len(self.tracks) - len(tracks)} unreadable file(s)"
            )
        return Dataset(root=self.root, genres=genres, tracks=tracks)


def discover(root: Path, min_tracks_per_genre: int = 1) -> Dataset:
    """Find genre folders and their audio files under ``root`` (sorted, reproducible)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    tracks: list[Track] = []
    genres: list[str] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = audio_files_in(folder)
        if len(files) < min_tracks_per_genre or not files:
            continue
        genres.append(folder.name)
        tracks.extend(Track(f, folder.name, f.relative_to(root).as_posix()) for f in files)
    if len(genres) < 2:
        raise ValueError(
            f"{root} needs at least two genre sub-folders with audio files "
            f"(found {len(genres)}); expected layout: {root}/<genre>/<track>.wav"
        )
    return Dataset(root=root, genres=genres, tracks=tracks)


def load_audio(path: Path, sample_rate: int) -> tuple[np.ndarray, int, float]:
    """Mono float32 audio at ``sample_rate``, plus the file's own rate and the decoded seconds.

    Raises :class:`~embeddings.audio.DecodeError` with the reason for a file
    neither libsndfile nor FFmpeg can decode.
    """
    audio, info = read_audio(path, sample_rate)
    return audio, info.sample_rate, len(audio) / sample_rate


def excerpt_offset(
    path: Path,
    duration_s: float,
    max_seconds: float | None,
    seed: int,
    within_s: float | None = None,
) -> float:
    """Where a track's pretraining excerpt starts: fixed per (file, seed), seconds.

    Seeded by the resolved path rather than drawn at run time, so a re-run reuses
    the cache and the teacher targets line up with the same audio. ``within_s``
    keeps the excerpt inside the first ``within_s`` seconds where it can (a teacher
    cache that analysed only the start of long files).
    """
    usable = min(duration_s, within_s) if within_s else duration_s
    if not max_seconds or usable <= max_seconds:
        return 0.0
    digest = int(hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:12], 16)
    rng = np.random.default_rng([seed, digest])
    return float(rng.uniform(0.0, usable - max_seconds))


def load_excerpt(
    path: Path,
    sample_rate: int,
    max_seconds: float | None,
    seed: int = 0,
    within_s: float | None = None,
) -> tuple[np.ndarray, float, float]:
    """Mono audio of at most ``max_seconds`` from :func:`excerpt_offset`; also offset and duration.

    libsndfile seeks straight to the excerpt (WAV, FLAC, OGG, MP3...), so a
    one-hour file never sits in memory whole; FFmpeg (M4A/AAC) decodes up to its
    end. The duration is the declared one, as the offset was drawn from it (the
    excerpt's own length where the container declares none).
    """
    info = audio_info(path)
    duration = info.duration_s or 0.0
    offset = excerpt_offset(path, duration, max_seconds, seed, within_s)
    audio, _ = read_audio(path, sample_rate, start_s=offset, max_seconds=max_seconds)
    if len(audio) == 0:
        raise DecodeError(f"no audio decoded at {offset:.1f} s of a {duration:.1f} s file")
    return audio, offset, float(duration or len(audio) / sample_rate)


def log_power(audio: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Unreferenced dB mel spectrogram of a whole clip, (n_mels, frames), float32."""
    if len(audio) < config.n_fft:
        audio = np.pad(audio, (0, config.n_fft - len(audio)))
    power = power_mel(audio, config)
    return (10.0 * np.log10(np.maximum(AMIN, power))).astype(np.float32)


@dataclass
class TrackFeatures:
    """Everything training and evaluation need from one track."""

    log_power: np.ndarray  # (n_mels, frames) dB, unreferenced
    segments: np.ndarray  # (n_segments, n_mels, segment_frames), normalised
    source_rate: int
    duration_s: float
    handcrafted: np.ndarray | None = None  # (57,)


class FeatureCache:
    """Per-track features on disk, recomputed only when the file or front end changes."""

    def __init__(self, directory: Path, config: FrontendConfig) -> None:
        self.directory = Path(directory)
        self.config = config
        self.directory.mkdir(parents=True, exist_ok=True)

    def _key(self, path: Path) -> str:
        stat = path.stat()
        ident = json.dumps(
            [
                str(path.resolve()),
                stat.st_size,
                stat.st_mtime_ns,
                self.config.to_dict(),
                CACHE_VERSION,
            ],
            sort_keys=True,
        )
        return hashlib.sha256(ident.encode()).hexdigest()[:24]

    def get(
        self, path: Path, handcrafted: bool = False, max_seconds: float | None = None
    ) -> TrackFeatures:
        """Cached features for ``path``; decodes and computes what is missing.

        ``max_seconds`` (``sonic train --max-seconds``) keeps only an excerpt of that
        length from the seeded offset of :func:`excerpt_offset` (seed 0): a corpus of
        long tracks is decoded and held in memory at a fraction of the cost. It is
        cached under its own name beside the whole track's features.
        """
        base = self.directory / self._key(path)
        if max_seconds:
            base = base.with_name(f"{base.name}-x{max_seconds:g}")
        mel_file = base.with_suffix(".mel.npz")
        hand_file = base.with_suffix(".hand.npy")
        audio = None

        def decode() -> tuple[np.ndarray, int, float]:
            if not max_seconds:
                return load_audio(path, self.config.sample_rate)
            clip, _, _ = load_excerpt(path, self.config.sample_rate, max_seconds)
            rate = audio_info(path).sample_rate or self.config.sample_rate
            return clip, int(rate), len(clip) / self.config.sample_rate

        if mel_file.is_file():
            with np.load(mel_file) as data:
                feats = TrackFeatures(
                    log_power=data["log_power"],
                    segments=data["segments"],
                    source_rate=int(data["source_rate"]),
                    duration_s=float(data["duration_s"]),
                )
        else:
            audio, rate, duration = decode()
            silent = silence_reason(audio)
            if silent:  # nothing to learn; ingest refuses such tracks too
                raise DecodeError(silent)
            segments = split_segments(audio, self.config)
            feats = TrackFeatures(
                log_power=log_power(audio, self.config),
                segments=batch_features(segments, self.config),
                source_rate=rate,
                duration_s=duration,
            )
            atomic_write(
                mel_file,
                lambda fh: np.savez(
                    fh,
                    log_power=feats.log_power,
                    segments=feats.segments,
                    source_rate=rate,
                    duration_s=duration,
                ),
            )
        if handcrafted:
            if hand_file.is_file():
                feats.handcrafted = np.load(hand_file)
            else:
                from embeddings.training.handcrafted import handcrafted_features

                if audio is None:
                    audio, _, _ = decode()
                feats.handcrafted = handcrafted_features(audio, self.config.sample_rate)
                atomic_write(hand_file, lambda fh: np.save(fh, feats.handcrafted))
        return feats

    def excerpt(
        self, path: Path, max_seconds: float | None, seed: int = 0, within_s: float | None = None
    ) -> tuple[np.ndarray, float, float]:
        """fp16 ``log_power`` of a track's pretraining excerpt, its offset and the duration (s).

        Cached beside the other features under the same key (file identity and
        front end) plus the excerpt's length, seed and ``within_s`` (see
        :func:`excerpt_offset`).
        """
        span = f"{max_seconds:g}" if max_seconds else "all"
        within = f"-w{within_s:g}" if within_s and max_seconds else ""
        target = self.directory / f"{self._key(path)}.ssl-{span}-{seed}{within}.npz"
        if target.is_file():
            with np.load(target) as data:
                return data["log_power"], float(data["offset_s"]), float(data["duration_s"])
        audio, offset, duration = load_excerpt(
            path, self.config.sample_rate, max_seconds, seed, within_s
        )
        if len(audio) == 0:
            raise ValueError("no audio decoded")
        spec = log_power(audio, self.config).astype(np.float16)
        atomic_write(
            target,
            lambda fh: np.savez(fh, log_power=spec, offset_s=offset, duration_s=duration),
        )
        return spec, offset, duration

    def load_all(
        self,
        tracks: Iterable[Track],
        handcrafted: bool = False,
        progress: Callable[[Iterable], Iterable] | None = None,
        max_seconds: float | None = None,
    ) -> tuple[list[TrackFeatures], list[tuple[Track, str]]]:
        """Features of the readable tracks, in order, and (track, reason) for the rest
        (``max_seconds``: an excerpt of each, see :meth:`get`)."""
        items = list(tracks)
        iterator = progress(items) if progress else items
        features: list[TrackFeatures] = []
        unreadable: list[tuple[Track, str]] = []
        for track in iterator:
            try:
                features.append(self.get(track.path, handcrafted, max_seconds))
            except Exception as exc:  # one bad file must not end a training run
                unreadable.append((track, failure_reason(exc)))
        return features, unreadable
