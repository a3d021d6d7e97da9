"""A finished track: its answer assembled from its segments, its heatmap, its commit.

Once the worker's last message and every segment's network output have arrived,
the track's probabilities and embedding are aggregated, its heatmap is drawn for
the genre it was given, and it is committed in one transaction (or its failure is
recorded, with a reason). Mixed into :class:`ingest.pipeline.IngestRun`; the Ray
node run overrides the writing to hand outcomes back instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from catalog.records import Analysis, AudioFacts, Explanation, FileFacts, Tags
from embeddings.atomic import atomic_write
from embeddings.windows import BestWindowTracker
from ingest.artefacts import heatmap_file
from ingest.messages import Done
from ingest.worker import Task

if TYPE_CHECKING:
    from catalog.store import Catalog
    from embeddings.checkpoint import GenreModel
    from embeddings.inference import Predictor
    from ingest.options import IngestOptions, IngestSummary
    from ingest.progress import ProgressSink
    from ingest.scan import Plan

NON_FINITE_OUTPUT = (
    "the model produced non-finite output (NaN or infinity) for this file; "
    "nothing was stored for it"
)


@dataclass
class TrackState:
    """A track in flight: what the workers sent so far and what inference returned."""

    task: Task
    facts: FileFacts | None = None
    tags: Tags | None = None
    probs: dict[int, np.ndarray] = field(default_factory=dict)  # first segment -> probs
    segment_embeddings: dict[int, np.ndarray] = field(default_factory=dict)  # projected, fp16
    window: BestWindowTracker | None = None  # features of the best window per genre
    embedding_sum: np.ndarray | None = None
    # Where each segment starts (seconds), under the analysis budget; empty when the
    # segments are consecutive from the start of the track.
    segment_starts: list[float] = field(default_factory=list)
    sent: int = 0
    inferred: int = 0
    end: Done | None = None  # the worker's last message, once it arrived


class Recording:
    """Finishing tracks (a mixin of :class:`~ingest.pipeline.IngestRun`)."""

    catalog: Catalog
    model: GenreModel
    options: IngestOptions
    plan: Plan
    predictor: Predictor | None
    progress: ProgressSink
    states: dict[int, TrackState]
    summary: IngestSummary

    def _new_state(self, task: Task) -> TrackState:
        window = None
        if self.options.heatmaps:
            window = BestWindowTracker(len(self.model.genres), self.options.heatmap_segments)
        return TrackState(task, window=window)

    def _maybe_finish(self, task_id: int) -> None:
        state = self.states.get(task_id)
        if state is None or state.end is None:
            return
        end = state.end
        audio, n_segments, warning, overview = end.audio, end.n_segments, end.warning, end.overview
        if state.inferred < n_segments:
            return
        order = sorted(state.probs)
        seg_probs = np.concatenate([state.probs[k] for k in order])
        if not (np.isfinite(seg_probs).all() and np.isfinite(state.embedding_sum).all()):
            # Never let NaN reach SQLite (NOT NULL on probabilities ended whole runs)
            # or FAISS: whatever caused it, it is this track's failure, not the run's.
            self._fail(task_id, NON_FINITE_OUTPUT, audio)
            return
        del self.states[task_id]
        from embeddings.aggregation import aggregate, l2_normalise

        probabilities = aggregate(seg_probs, self.options.aggregation)
        analysis = Analysis(
            model_id=self.model.model_id,
            genres=self.model.genres,
            probabilities=probabilities,
            embedding=l2_normalise((state.embedding_sum / n_segments).astype(np.float32)),
            segment_probabilities=seg_probs,
            segment_seconds=self.model.frontend.segment_seconds,
            segment_embeddings=np.concatenate([state.segment_embeddings[k] for k in order]),
            segment_starts=np.asarray(state.segment_starts) if state.segment_starts else None,
            warning=warning,
            overview=overview,
        )
        if state.window is not None:
            analysis.explanation = self._explain(state, int(np.argmax(probabilities)))
        self._record(task_id, state, audio, analysis)

    def _record(
        self, task_id: int, state: TrackState, audio: AudioFacts, analysis: Analysis
    ) -> None:
        """Commit one analysed track, in one transaction (the Ray driver's writer too)."""
        self.catalog.record_analysis(
            state.facts, state.tags or Tags(), audio, analysis, self.plan.task_rows.get(task_id)
        )
        self.summary.analysed += 1
        self.summary.audio_seconds += audio.duration_s
        self.progress.advance(audio.duration_s)

    def _heatmaps_dir(self) -> Path:
        """Where Grad-CAM pictures go: the data directory (shared, under Ray)."""
        return self.catalog.paths.heatmaps

    def _explain(self, state: TrackState, genre_index: int) -> Explanation:
        """Grad-CAM for the predicted genre over the track's most confident window."""
        from embeddings.gradcam import band_focus
        from embeddings.heatmap_image import render_heatmap_png

        config = self.model.frontend
        first, window = state.window.best(genre_index)
        features = window.astype(np.float32)
        cam = self._grad_cam(features, genre_index)
        focus = band_focus(cam, config)
        starts = state.segment_starts
        start = starts[first] if starts else first * config.segment_seconds
        end = start + len(window) * config.segment_seconds
        genre = self.model.genres[genre_index]
        png = render_heatmap_png(
            np.concatenate(list(features), axis=1),
            np.concatenate(list(cam), axis=1),
            config,
            start,
            f"Grad-CAM for '{genre}': {Path(state.task.path).name}",
        )
        path = heatmap_file(self._heatmaps_dir(), state.facts.content_hash, self.model.model_id)
        atomic_write(path, png, parents=True)
        return Explanation(str(path), genre, start, end, focus.as_dict())

    def _grad_cam(self, features: np.ndarray, genre_index: int) -> np.ndarray:
        """The Grad-CAM maps of ``features`` for ``genre_index``, as cheaply as they are exact.

        For the ResNet18 Grad-CAM is the class activation map: one forward pass over
        the folded inference copy in fp32 (the precision ``predict`` runs at here), no
        backward pass and no autograd graph (``tests/test_explain.py`` checks it
        equals autograd Grad-CAM). Any other network: autograd Grad-CAM as before.
        """
        from embeddings.gradcam import class_activation_map, exact_cam

        network = getattr(self.predictor, "inference_network", None)
        if network is not None and exact_cam(network):
            return class_activation_map(network, features, genre_index)
        return self.predictor.grad_cam(features, genre_index)

    def _fail(self, task_id: int, reason: str, audio: AudioFacts | None = None) -> None:
        state = self.states.pop(task_id)
        facts = state.facts or facts_without_hash(Path(state.task.path))
        if facts is not None:
            self.catalog.record_failure(
                facts, reason, state.tags, audio, self.plan.task_rows.get(task_id)
            )
        self.summary.failed.append((state.task.path, reason))
        self.progress.note(f"failed: {state.task.path}: {reason}")
        self.progress.advance(0.0)


def facts_without_hash(path: Path) -> FileFacts | None:
    """Facts to record a failure under when no worker sent any (never opens the file)."""
    try:
        stat = path.stat()
    except OSError:
        try:
            stat = os.lstat(path)  # a dangling link: keyed as the plan keys it
        except OSError:
            return None
    return FileFacts(str(path), stat.st_size, stat.st_mtime_ns, None, path.suffix.lower()[1:])
