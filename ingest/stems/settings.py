"""What a stem set is keyed by: the settings, the cache key and its folder, and the errors.

Why a module of its own: the key decides whether stems are reused, so everything
that goes into it (model name, settings, :data:`PIPELINE_VERSION`) lives in one
place, apart from the code that computes stems. The key is (audio content hash,
model name, settings hash): a moved, renamed or copied file finds its stems; an
edited file does not.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from catalog.stems import StemKey
from catalog.store import Catalog
from ingest.stems.audio import FORMATS

MODELS_DIR_ENV = "SONIC_DEMUCS_DIR"
DEFAULT_MODEL = "htdemucs"
# Bump when a change to this package changes the stems written for the same settings.
PIPELINE_VERSION = 1


class StemWeightsError(RuntimeError):
    """No Demucs weights could be loaded; the message names every way to provide them."""


class StemSeparationError(RuntimeError):
    """Separating one track failed (the failure is recorded in the catalog)."""


class StemsNotAvailable(LookupError):
    """The track cannot be separated now (its file is gone and no stems are cached)."""


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
