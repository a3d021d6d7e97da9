"""What one ``sonic ingest`` is asked to do, and what it reports when it is done.

Kept apart from the pipeline so the CLI, the Ray driver and the tests can build
options and read summaries without importing the machinery that runs them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from embeddings.windows import DEFAULT_ANALYSIS_SECONDS


@dataclass
class IngestOptions:
    workers: int = os.cpu_count() or 1
    # Inference calls run side by side, one core each, rather than one call spread
    # over all cores: a multi-threaded call stalls whenever a decode worker holds one
    # of its cores, while independent single-threaded calls just share the CPU.
    inference_threads: int = os.cpu_count() or 1
    batch_size: int = 32
    aggregation: str = "mean"
    device: str | None = None
    precision: str = "auto"
    heatmaps: bool = True  # Grad-CAM heatmap + band focus per track
    heatmap_segments: int = 4  # length of the explained window, in segments
    # Seconds of each long track analysed, as evenly spread windows decoded on their
    # own (embeddings.windows.analysis_windows); None: whole tracks (--analysis full).
    analysis_seconds: float | None = DEFAULT_ANALYSIS_SECONDS
    # A decode worker that sends nothing about its file for this long is taken to be
    # hung (a stuck decoder, an unresponsive disk) and is killed; the file fails with
    # that reason and a new worker takes over. It is a no-progress budget, not a
    # length limit: workers report in at least every ALIVE_SECONDS while a long
    # track streams, and the main process's own busy spells do not count.
    stall_seconds: float = 120.0
    # While a `sonic serve` on the same data directory is answering requests, run one
    # network call at a time and rest between calls (ingest.busy_signal).
    yield_to_service: bool = True


@dataclass
class IngestSummary:
    files_seen: int = 0
    analysed: int = 0
    skipped: int = 0
    reused: int = 0  # unchanged content under a new mtime or path (moves, touches)
    failed: list[tuple[str, str]] = field(default_factory=list)
    # Folders the scan could not list: their files were neither seen nor marked missing.
    unreadable_folders: list[tuple[str, str]] = field(default_factory=list)
    missing: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    index_repaired: bool = False
    model_id: str = ""
    model_trained: bool = True
    inference: str | None = None  # the path the network ran on (Predictor.describe), if it ran
    # PyTorch's kernel set in this process (torch.backends.cpu.get_cpu_capability(), e.g.
    # "AVX2" under ATEN_CPU_CAPABILITY=avx2): the CPU's flags alone do not show a cap
    cpu_capability: str | None = None
    analysis: str | None = None  # how much of each track was analysed (describe_analysis)
    # PostgreSQL: files another ingest running at the same time was analysing (its work)
    claimed_elsewhere: int = 0
    previous_model_id: str | None = None  # set when this run switched the catalog's model
    other_model_tracks: int = 0  # analysed by another model: out of search until redone
    yielded_seconds: float = 0.0  # time the network stood aside for a busy `sonic serve`
    nodes: dict[str, int] = field(default_factory=dict)  # files per Ray node (--ray only)
    ray_actors: dict[str, int] = field(default_factory=dict)  # files per Ray actor kind (gpu, cpu)
    library_genres: int = 0  # tracks the library genre model (learn-genres) predicted now

    @property
    def processed(self) -> int:
        return self.analysed + self.skipped + self.reused

    def to_dict(self) -> dict:
        return {
            "files_seen": self.files_seen,
            "analysed": self.analysed,
            "skipped": self.skipped,
            "reused": self.reused,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "unreadable_folders": [{"path": p, "reason": r} for p, r in self.unreadable_folders],
            "missing": self.missing,
            "audio_hours": self.audio_seconds / 3600,
            "wall_seconds": self.wall_seconds,
            "index_repaired": self.index_repaired,
            "model_id": self.model_id,
            "model_trained": self.model_trained,
            "inference": self.inference,
            "cpu_capability": self.cpu_capability,
            "analysis": self.analysis,
            "previous_model_id": self.previous_model_id,
            "other_model_tracks": self.other_model_tracks,
            "yielded_seconds": self.yielded_seconds,
            "claimed_elsewhere": self.claimed_elsewhere,
            "nodes": self.nodes,
            "ray_actors": self.ray_actors,
            "library_genres": self.library_genres,
        }
