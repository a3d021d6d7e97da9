"""Files the analysis leaves in the data directory (heatmap PNGs), written atomically.

Artefacts are named by content hash and model id, not by path or track id: a moved
file keeps its heatmap, and a changed file or a new model gets a new one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def heatmap_file(heatmaps_dir: Path, content_hash: str, model_id: str, suffix: str = "") -> Path:
    name = f"{content_hash}-{_safe(model_id)}{_safe(suffix)}.png"
    return Path(heatmaps_dir) / content_hash[:2] / name


def write_atomic(path: Path, data: bytes) -> Path:
    """Write to a temporary file and rename: readers never see half an image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path
