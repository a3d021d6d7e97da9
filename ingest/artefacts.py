"""Where the analysis leaves files in the data directory (heatmap PNGs).

They are written with :func:`embeddings.atomic.atomic_write`: readers never see half
an image.

Artefacts are named by content hash and model id, not by path or track id: a moved
file keeps its heatmap, and a changed file or a new model gets a new one.
"""

from __future__ import annotations

import re
from pathlib import Path


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def heatmap_file(heatmaps_dir: Path, content_hash: str, model_id: str, suffix: str = "") -> Path:
    name = f"{content_hash}-{_safe(model_id)}{_safe(suffix)}.png"
    return Path(heatmaps_dir) / content_hash[:2] / name
