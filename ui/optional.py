"""The one place the faces reach features that land on other branches.

- Explanations (issue 4: Grad-CAM heatmaps, the band-focus sentence, "why similar"
  attributions). Expected to fill ``track_details(...)["artefacts"]["heatmap"]``
  with a PNG under the data directory and a ``band_focus`` sentence; until they
  exist the routes answer 404 "no heatmap" and the UI says explanations are not
  available in this build.
- Stems (issue 5: Demucs separation with a cache). Wired to ``ingest.stems``
  (``StemSeparator``, ``separate_track``) and to ``artefacts["stems"]`` (the cached
  set, filled by ``catalog.stems.latest_stems``) when those modules are present;
  otherwise separation answers 501 "stem separation is not available in this build".

Nothing here invents a result: an absent feature says so. When a branch merges and
its function names differ, change them here and nowhere else.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from catalog.store import Catalog
from ui.jobs import current_job

STEM_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


class FeatureUnavailable(Exception):
    """A feature of another issue is absent from this build (HTTP 501 by default)."""

    def __init__(self, message: str, status_code: int = 501) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def inside(path: Path, roots: list[Path]) -> bool:
    """True if ``path`` (symlinks resolved) lies in one of ``roots`` (or is one)."""
    try:
        real = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    for root in roots:
        try:
            base = Path(root).resolve()
        except (OSError, RuntimeError):
            continue
        if real == base or real.is_relative_to(base):
            return True
    return False


class Explanations:
    """Grad-CAM heatmaps, band focus and "why similar" attributions (issue 4)."""

    ABSENT = "Grad-CAM explanations are not available in this build"

    @property
    def available(self) -> bool:
        return True  # catalog.explanations and ingest.explain (issue 4)

    def heatmap(self, catalog: Catalog, details: dict) -> Path | None:
        """The track's heatmap PNG if one was computed (only under the data directory)."""
        stored = (details.get("artefacts") or {}).get("heatmap")
        if not stored:
            return None
        path = Path(stored)
        if not path.is_absolute():
            path = catalog.paths.root / path
        return path if inside(path, [catalog.paths.root]) and path.is_file() else None

    def band_focus(self, details: dict) -> str | None:
        """The sentence naming the bands that drove the prediction (None before ingest drew it)."""
        explanation = details.get("explanation") or {}
        return explanation.get("sentence")

    def explain_pair(self, catalog: Catalog, track_id: int, other_id: int) -> dict:
        """Band-focus profiles and the closest moments of two tracks, with a sentence.

        The part of :func:`catalog.why_similar.why_similar` that comes from the
        attributions (heatmaps and segment embeddings).
        """
        from catalog.why_similar import why_similar

        data = why_similar(catalog, track_id, other_id)
        keys = ("a", "b", "cosine", "band_focus", "closest_moments", "sentence")
        return {key: data[key] for key in keys}


ProgressCallback = Callable[[float, float | None], None]  # (seconds done, total or None)


@dataclass
class _StemModule:
    separator: type
    separate_track: Callable


class Stems:
    """Demucs stem separation and its cache (issue 5)."""

    ABSENT = "stem separation is not available in this build"

    def __init__(self, device: str | None = "auto", models_dir: Path | None = None) -> None:
        self.device = device
        self.models_dir = models_dir
        self._module: _StemModule | None = None
        self._why_not: str | None = None
        self._probe()
        self._weights_problem: str | None = None
        if self._module is not None:
            from ingest.stems.weights import weights_missing

            # A look at files, at start-up: the UI disables the button with the fix at once
            # instead of failing after a long "separating" (nothing is downloaded here).
            self._weights_problem = weights_missing(models_dir=models_dir)

    def _probe(self) -> None:
        try:
            module = importlib.import_module("ingest.stems")
        except ModuleNotFoundError as exc:
            if exc.name not in ("ingest.stems", "demucs"):
                raise
            self._why_not = self.ABSENT + (
                " (demucs is not installed)" if exc.name == "demucs" else ""
            )
            return
        missing = [n for n in ("StemSeparator", "separate_track") if not hasattr(module, n)]
        if missing:
            self._why_not = (
                f"{self.ABSENT}: ingest.stems lacks {', '.join(missing)} (wire ui/optional.py)"
            )
            return
        self._module = _StemModule(module.StemSeparator, module.separate_track)

    @property
    def available(self) -> bool:
        return self._module is not None

    @property
    def why_not(self) -> str | None:
        return self._why_not

    @property
    def ready(self) -> bool:
        """Wired and with weights on disk: separation can start without a download."""
        return self._module is not None and self._weights_problem is None

    @property
    def not_ready_because(self) -> str | None:
        """The sentence that fixes separation (no module, or no weights), None when ready."""
        if self._module is None:
            return self._why_not or self.ABSENT
        if self._weights_problem:
            return (
                "Stem separation needs the Demucs weights: start `sonic serve --models-dir "
                "PATH` with a folder holding them (or set SONIC_DEMUCS_DIR), or run "
                "`sonic stems TRACK` once with network to download them. "
                + self._weights_problem
            )
        return None

    def cached(self, catalog: Catalog, details: dict) -> dict[str, Path]:
        """Stem name -> file of the cached set, only files under the data directory."""
        stems = (details.get("artefacts") or {}).get("stems") or {}
        out = {}
        for name, stored in stems.items():
            path = Path(stored)
            if not path.is_absolute():
                path = catalog.paths.root / path
            if valid_stem_name(name) and inside(path, [catalog.paths.root]):
                out[name] = path
        return out

    def separate(
        self, catalog: Catalog, track_id: int, progress: ProgressCallback | None = None
    ) -> dict:
        """Separate (or fetch from the cache) one track's stems; raises while absent.

        Run as a job (``ui.jobs``), the separation reports its chunks to that job
        (``chunk 12 / 80`` in ``GET /jobs/{id}`` and the web UI), and a cancel stops
        it at the next chunk with nothing recorded.
        """
        if self._module is None:
            raise FeatureUnavailable(self._why_not or self.ABSENT)
        job = current_job()
        separator = self._module.separator(
            models_dir=self.models_dir, device=self.device, progress=progress,
            chunks=job.report_chunks if job is not None else None,
        )  # fmt: skip
        result = self._module.separate_track(catalog, track_id, separator)
        return result.to_dict() if hasattr(result, "to_dict") else dict(result)


def valid_stem_name(name: str) -> bool:
    return 0 < len(name) <= 32 and set(name) <= STEM_NAME_CHARS


@dataclass
class Features:
    """What the service offers beyond the catalog; tests may pass their own."""

    explanations: Explanations
    stems: Stems

    @classmethod
    def detect(cls, device: str | None = "auto", models_dir: Path | None = None) -> Features:
        return cls(Explanations(), Stems(device, models_dir))
