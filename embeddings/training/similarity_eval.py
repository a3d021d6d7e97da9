"""How good is an embedding for sound-alike search? Same-album precision@k.

Without listening tests, the best cheap proxy for "sounds alike" is "comes from
the same album or soundtrack": one composer, one set of instruments, one
production. For a folder with one sub-folder per album, every track is embedded,
its k nearest *other* tracks are found by cosine similarity, and precision@k is
the fraction of them from its own album, averaged over all tracks.

Every method is scored in one run, on the same tracks, from the same decoded
audio, so the numbers are comparable:

- each requested checkpoint (genre model or pretrained backbone): the track
  embedding is the mean of ``embed()`` over the track's 3-second segments, cut
  exactly as ingest cuts them, then L2-normalised, as the catalog stores it;
- a handcrafted baseline: MFCC and spectral statistics
  (``handcrafted.spectral_statistics``), z-scored over the evaluated tracks;
- randomly initialised ResNet18s (fixed seeds, averaged): untrained
  convolutional features are a surprisingly strong baseline, and a trained
  embedding that does not beat them has learnt little about timbre;
- optionally a cached teacher's embedding (mean over its windows).

Albums with fewer than two tracks cannot contribute a same-album neighbour and
are skipped. With small albums, precision@k cannot reach 1 (an album of three
tracks offers two same-album neighbours out of k = 5), so the report gives the
*ceiling* (the best any method could score on these tracks) and the *chance*
level (random neighbours) beside the methods.

A few dozen tracks make a noisy test, so every method also gets a 95 % bootstrap
interval over the query tracks (``bootstrap_interval``) and its per-track scores,
in track order, so that two methods can be compared track by track.

Every method must see the same decoded audio in one run, so decoding, the methods
and the report stay together here; the statistics they are scored with are
:mod:`embeddings.training.similarity_metrics`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from embeddings.audio import audio_files_in, failure_reason, silence_reason
from embeddings.checkpoint import DEFAULT_CHECKPOINT, GTZAN_GENRES, load_checkpoint
from embeddings.frontend import FrontendConfig, batch_features, split_segments
from embeddings.inference import pick_device, pick_precision
from embeddings.model import build_seeded_model
from embeddings.training.dataset import load_audio
from embeddings.training.handcrafted import spectral_statistics
from embeddings.training.similarity_metrics import (
    bootstrap_interval,
    chance_and_ceiling,
    precision_at_k,
    zscore,
)
from embeddings.training.teacher import DEFAULT_LAYER, TeacherCache

Progress = Callable[..., Iterable]


@dataclass(frozen=True)
class AlbumTrack:
    path: Path
    album: str


def discover_albums(root: Path) -> tuple[list[AlbumTrack], dict[str, int]]:
    """Audio files per album sub-folder (recursive); albums under two tracks come back apart.

    Returns the tracks of albums with at least two files, and ``{album: n_files}``
    of the albums skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    tracks: list[AlbumTrack] = []
    skipped: dict[str, int] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = audio_files_in(folder)
        if len(files) < 2:
            skipped[folder.name] = len(files)
            continue
        tracks.extend(AlbumTrack(f.resolve(), folder.name) for f in files)
    return tracks, skipped


@dataclass
class _Network:
    name: str
    kind: str  # model or random
    network: nn.Module
    frontend: FrontendConfig
    detail: dict = field(default_factory=dict)
    seed: int | None = None


def random_network(seed: int, arch: str = "resnet18") -> nn.Module:
    """A randomly initialised network, the same for the same seed, in eval mode."""
    return build_seeded_model(arch, len(GTZAN_GENRES), seed)


@torch.inference_mode()
def track_embedding(
    network: nn.Module,
    segments: np.ndarray,
    device: torch.device,
    dtype: torch.dtype,
    batch_size: int = 64,
) -> np.ndarray:
    """Mean of ``embed()`` over a track's (n, mels, frames) segments, L2-normalised."""
    total = None
    for start in range(0, len(segments), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(segments[start : start + batch_size]))
        x = x.unsqueeze(1).to(device)
        if device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            e = network.embed(x).float().sum(dim=0)
        total = e if total is None else total + e
    mean = (total / max(1, len(segments))).cpu().numpy()
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else mean


def evaluate_similarity(
    root: Path,
    models: list[Path | None] | None = None,
    random_seeds: list[int] | None = None,
    teacher_cache: Path | None = None,
    teacher_layer: str = DEFAULT_LAYER,
    handcrafted: bool = True,
    max_seconds: float | None = None,
    k: int = 5,
    batch_size: int = 64,
    device: str | None = None,
    precision: str = "auto",
    progress: Progress | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Score every method on the albums under ``root``; see the module docstring.

    ``models``: checkpoint paths (``None`` means the shipped model); default the
    shipped model. ``random_seeds``: seeds of random ResNet18s (default ``[0]``,
    empty for none). ``max_seconds`` caps each track from its start.
    """
    started = time.perf_counter()
    models = [None] if models is None else models
    random_seeds = [0] if random_seeds is None else random_seeds
    tracks, skipped = discover_albums(root)
    for album, count in skipped.items():
        log(f"warning: album {album!r} has {count} track(s); skipped (needs at least two)")
    if not tracks:
        raise ValueError(f"no album under {root} has two or more audio files")

    torch_device = pick_device(device)
    dtype = pick_precision(torch_device, precision)
    networks: list[_Network] = []
    for path in models:
        model = load_checkpoint(path or DEFAULT_CHECKPOINT)
        label = Path(path).name if path else f"shipped {DEFAULT_CHECKPOINT.name}"
        networks.append(
            _Network(
                name=f"{label} ({model.model_id})",
                kind="backbone" if model.is_backbone else "genre model",
                network=model.network.eval().to(torch_device),
                frontend=model.frontend,
                detail={"path": str(path or DEFAULT_CHECKPOINT), "model_id": model.model_id},
            )
        )
    for seed in random_seeds:
        networks.append(
            _Network(
                name="random resnet18",
                kind="random",
                network=random_network(seed).to(torch_device),
                frontend=FrontendConfig(),
                seed=seed,
            )
        )
    for item in networks:
        if torch_device.type == "cpu":
            item.network.to(memory_format=torch.channels_last)
    teacher = TeacherCache(teacher_cache, teacher_layer) if teacher_cache else None
    sample_rate = FrontendConfig().sample_rate

    kept: list[AlbumTrack] = []
    vectors: dict[int, list[np.ndarray]] = {i: [] for i in range(len(networks))}
    hand: list[np.ndarray] = []
    teacher_vectors: list[np.ndarray] = []
    failed: list[dict] = []
    no_teacher = 0
    iterator = progress(tracks, desc="tracks", unit="track") if progress else tracks
    for track in iterator:
        teacher_vector = None
        if teacher is not None:
            teacher_vector = teacher.mean_vector(track.path, max_seconds)
            if teacher_vector is None:
                no_teacher += 1
                continue
        try:
            audio, _, _ = load_audio(track.path, sample_rate)
        except Exception as exc:  # a broken file is reported, not fatal
            failed.append({"path": str(track.path), "reason": failure_reason(exc)})
            continue
        if max_seconds:
            audio = audio[: int(max_seconds * sample_rate)]
        silent = silence_reason(audio)
        if silent:
            failed.append({"path": str(track.path), "reason": silent})
            continue
        segments: dict[FrontendConfig, np.ndarray] = {}
        for i, item in enumerate(networks):
            fe = item.frontend
            if fe not in segments:
                signal = audio
                if fe.sample_rate != sample_rate:
                    import soxr

                    signal = soxr.resample(audio, sample_rate, fe.sample_rate).astype(np.float32)
                segments[fe] = batch_features(split_segments(signal, fe), fe)
            vectors[i].append(
                track_embedding(item.network, segments[fe], torch_device, dtype, batch_size)
            )
        if handcrafted:
            hand.append(spectral_statistics(audio, sample_rate))
        if teacher_vector is not None:
            teacher_vectors.append(teacher_vector)
        kept.append(track)
    if no_teacher:
        log(
            f"warning: {no_teacher} tracks have no entry in the teacher cache; every "
            "method is scored without them so that all are scored on the same tracks"
        )
    for item in failed:
        log(f"warning: skipped {item['path']}: {item['reason']}")

    # failures can leave an album with one track: drop it for every method alike
    albums = np.array([t.album for t in kept])
    names, counts = np.unique(albums, return_counts=True)
    lonely = set(names[counts < 2])
    for album in sorted(lonely):
        log(f"warning: album {album!r} has one usable track left; skipped")
        skipped[album] = 1
    keep = np.array([t.album not in lonely for t in kept], dtype=bool)
    if keep.sum() < 2:
        raise ValueError("fewer than two usable tracks in albums of two or more")
    labels = albums[keep]
    chance, ceiling = chance_and_ceiling(labels, k)

    def scored(x: np.ndarray) -> dict:
        per_track = precision_at_k(x[keep], labels, k)
        return {
            "precision": float(per_track.mean()),
            "interval_95": list(bootstrap_interval(per_track)),
            "per_album": {str(a): float(per_track[labels == a].mean()) for a in np.unique(labels)},
            "per_track": [float(v) for v in per_track],
        }

    methods: list[dict] = []
    singles = [(i, n) for i, n in enumerate(networks) if n.kind != "random"]
    for i, item in singles:
        methods.append({"name": item.name, "kind": item.kind,
                        **scored(np.stack(vectors[i])), **item.detail})  # fmt: skip
    randoms = [(i, n) for i, n in enumerate(networks) if n.kind == "random"]
    if randoms:
        scores = [scored(np.stack(vectors[i])) for i, _ in randoms]
        values = np.array([s["precision"] for s in scores])
        first = scores[0]["per_album"]
        per_album = {a: float(np.mean([s["per_album"][a] for s in scores])) for a in first}
        methods.append({
            "name": f"random resnet18 (seeds {', '.join(str(n.seed) for _, n in randoms)})",
            "kind": "random", "precision": float(values.mean()),
            "precision_std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "per_seed": {str(n.seed): float(v) for (_, n), v in zip(randoms, values, strict=True)},
            "per_album": per_album,
        })  # fmt: skip
    if handcrafted:
        name = "handcrafted (MFCC + spectral statistics, z-scored)"
        methods.append({"name": name, "kind": "handcrafted", **scored(zscore(np.stack(hand)))})
    if teacher is not None:
        methods.append({"name": f"teacher {teacher_layer} (mean over windows)", "kind": "teacher",
                        **scored(np.stack(teacher_vectors)),
                        "cache": str(teacher_cache)})  # fmt: skip

    return {
        "dir": str(Path(root).resolve()),
        "k": k,
        "metric": f"same-album precision@{k}",
        "tracks": int(keep.sum()),
        "albums": int(len(np.unique(labels))),
        "album_sizes": {str(a): int((labels == a).sum()) for a in np.unique(labels)},
        "track_files": [str(t.path) for t, kept_ in zip(kept, keep, strict=True) if kept_],
        # the album each query track was scored against, in ``per_track`` order
        "track_albums": [str(a) for a in labels],
        "skipped_albums": skipped,
        "failed": failed,
        "tracks_without_teacher": no_teacher,
        "max_seconds": max_seconds,
        "chance": chance,
        "ceiling": ceiling,
        "methods": methods,
        "device": str(torch_device),
        "seconds": time.perf_counter() - started,
    }


def format_table(result: dict) -> str:
    """The result as a plain-text table, best method first."""
    k = result["k"]
    lines = [
        f"same-album precision@{k} on {result['tracks']} tracks in {result['albums']} albums "
        f"of {result['dir']}",
        f"(chance {result['chance']:.3f}, ceiling {result['ceiling']:.3f}: the best any "
        "method can score with these album sizes)",
        "",
    ]
    rows = sorted(result["methods"], key=lambda m: -m["precision"])
    width = max(len(m["name"]) for m in rows)
    lines.append(f"{'method':<{width}}  {'kind':<12} p@{k}   (95% interval over tracks)")
    for m in rows:
        spread = f" ± {m['precision_std']:.3f}" if m.get("precision_std") else ""
        interval = m.get("interval_95")
        band = f"   ({interval[0]:.3f}-{interval[1]:.3f})" if interval else ""
        lines.append(f"{m['name']:<{width}}  {m['kind']:<12} {m['precision']:.3f}{spread}{band}")
    if result["skipped_albums"]:
        lines.append(f"\nskipped albums (fewer than two tracks): {len(result['skipped_albums'])}")
    if result["failed"]:
        lines.append(f"unreadable tracks skipped: {len(result['failed'])}")
    if result["tracks_without_teacher"]:
        lines.append(
            f"tracks without a teacher entry, left out: {result['tracks_without_teacher']}"
        )
    return "\n".join(lines)
