"""On-demand explanations of a catalogued track, for any genre, cached on disk.

The CLI (`sonic explain`), the API and the UI call :func:`explain_track`. It picks
the window to explain from what the catalog already knows (the ingest heatmap's
window for the predicted genre, else the stretch of segments most confident in the
asked-for genre), decodes only up to the end of that window, computes the
attribution and caches the picture and the raw map, keyed by content hash, model,
method, genre and window, so asking twice costs a file read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select

from catalog.errors import TrackNotFound
from catalog.schema import Segment, Track, TrackStatus
from catalog.store import Catalog
from embeddings.atomic import atomic_write
from embeddings.attributions import METHODS, attribute
from embeddings.audio import decode_all
from embeddings.bands import band_focus_sentence
from embeddings.checkpoint import GenreModel
from embeddings.frontend import batch_features, split_segments
from embeddings.gradcam import band_focus
from embeddings.heatmap_image import render_heatmap_png
from ingest.artefacts import heatmap_file

WINDOW_SEGMENTS = 4


class ExplainError(ValueError):
    """The explanation cannot be computed as asked; the message says why."""


@dataclass
class _Target:
    track: Track
    genre: str
    genre_index: int
    first: int
    count: int
    start_s: float  # where the window starts (a window of the analysis budget need not
    # start on a multiple of the segment length)


def _best_window(
    probabilities: np.ndarray,
    genre_index: int,
    size: int,
    starts: np.ndarray | None = None,
    step: float = 3.0,
) -> int:
    """First segment (row) of the contiguous window most confident in the genre.

    ``starts``: where each row's segment starts; under the analysis budget the rows
    are windows of the track with gaps between them, and a window never spans one.
    """
    column = probabilities[:, genre_index]
    if len(column) <= size:
        return 0
    means = np.convolve(column, np.ones(size) / size, mode="valid")
    if starts is not None:
        span = starts[size - 1 :] - starts[: len(starts) - size + 1]
        contiguous = np.abs(span - (size - 1) * step) < 1e-3
        if contiguous.any():
            means = np.where(contiguous, means, -np.inf)
    return int(np.argmax(means))


def _target(catalog: Catalog, track_id: int, model: GenreModel, genre: str | None) -> _Target:
    with catalog.sessions() as s:
        track = s.get(Track, track_id)
        if track is None:
            raise TrackNotFound(f"no track with id {track_id}")
        if track.status != TrackStatus.OK:
            raise ExplainError(
                f"track {track_id} is {track.status}: {track.error or 'no analysis'}"
            )
        rows = s.execute(
            select(Segment.probabilities, Segment.start_s)
            .where(Segment.track_id == track_id)
            .order_by(Segment.idx)
        ).all()
    if track.model_id != model.model_id:
        raise ExplainError(
            f"track {track_id} was analysed by model {track.model_id}, not {model.model_id}: "
            "re-run `sonic ingest` with this model, or pass --checkpoint with the model that "
            "analysed it"
        )
    genre = genre or track.genre
    if genre not in model.genres:
        raise ExplainError(f"unknown genre {genre!r}; choose one of {', '.join(model.genres)}")
    index = model.genres.index(genre)
    step = model.frontend.segment_seconds
    if genre == track.heatmap_genre and track.heatmap_start_s is not None:
        start_s = float(track.heatmap_start_s)
        first = int(round(start_s / step))
        count = int(round((track.heatmap_end_s - track.heatmap_start_s) / step))
    else:
        probs = np.stack([np.frombuffer(r, dtype=np.float32) for r, _ in rows])
        starts = np.array([start for _, start in rows], dtype=np.float64)
        row = _best_window(probs, index, WINDOW_SEGMENTS, starts, step)
        start_s = float(starts[row])
        first = int(round(start_s / step))  # the segment of the track it starts at
        count = min(WINDOW_SEGMENTS, len(probs))
    return _Target(track, genre, index, first, count, start_s)


def explain_track(
    catalog: Catalog,
    track_id: int,
    model: GenreModel,
    method: str = "gradcam",
    genre: str | None = None,
) -> dict:
    """An attribution map for ``genre`` (default: the predicted one), PNG path included."""
    if method not in METHODS:
        raise ExplainError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    target = _target(catalog, track_id, model, genre)
    config = model.frontend
    start = target.start_s
    end = start + target.count * config.segment_seconds
    suffix = f"-{method}-{target.genre}-{target.first}x{target.count}"
    png = heatmap_file(catalog.paths.heatmaps, target.track.content_hash, model.model_id, suffix)
    raw = png.with_suffix(".npz")
    cached = png.exists() and raw.exists()
    if cached:
        stored = np.load(raw)
        maps, delta = stored["maps"].astype(np.float32), stored["delta"].item()
        delta = None if np.isnan(delta) else float(delta)
    else:
        maps, delta, mel = _compute(target, model, method, start, end)
        title = f"{method} for '{target.genre}': {Path(target.track.path).name}"
        image = render_heatmap_png(mel, np.concatenate(list(maps), axis=1), config, start, title)
        atomic_write(png, image, parents=True)
        raw.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(raw, maps=maps.astype(np.float16),
                            delta=np.nan if delta is None else delta)  # fmt: skip
    focus = band_focus(np.maximum(maps, 0), config).as_dict()
    return {
        "track_id": track_id,
        "method": method,
        "genre": target.genre,
        "window_s": [start, end],
        "heatmap": str(png),
        "band_focus": focus,
        "sentence": band_focus_sentence(focus),
        "convergence_delta": delta,
        "cached": cached,
    }


def _compute(
    target: _Target, model: GenreModel, method: str, start: float, end: float
) -> tuple[np.ndarray, float | None, np.ndarray]:
    config = model.frontend
    try:
        audio = decode_all(Path(target.track.path), config.sample_rate, max_seconds=end)
    except Exception as exc:
        raise ExplainError(f"cannot decode {target.track.path}: {exc}") from exc
    window = audio[int(start * config.sample_rate) :]
    segments = split_segments(window, config)[: target.count]
    if len(segments) == 0:
        raise ExplainError(f"{target.track.path} has no audio at {start:.0f} s any more")
    features = batch_features(segments, config)
    model.network.eval()
    result = attribute(model.network, features, target.genre_index, method)
    return result.maps, result.convergence_delta, np.concatenate(list(features), axis=1)
