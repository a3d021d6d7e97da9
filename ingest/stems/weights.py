"""Getting a Demucs model: the weights, and what the model allows (the device: embeddings.device).

Why apart from the separation: loading is where the outside world comes in (a
download, Demucs' cache, a local ``--models-dir`` folder), and where a missing
model must become one error that says how to fix it. The separation code only
asks for a model; a cache hit never calls anything here.
"""

from __future__ import annotations

import os
from pathlib import Path

from demucs.apply import BagOfModels
from demucs.htdemucs import HTDemucs

from ingest.stems.settings import DEFAULT_MODEL, MODELS_DIR_ENV, StemWeightsError


def _weights_help(name: str) -> str:
    return (
        f"Either let Demucs download '{name}' once and cache it (needs network; kept in "
        "the torch hub / HuggingFace cache), or put Demucs checkpoints (the model's "
        f"'{name}.yaml' and the '<signature>.th' files it lists) in a folder and pass "
        f"--models-dir PATH or set {MODELS_DIR_ENV}=PATH."
    )


def load_demucs_model(name: str = DEFAULT_MODEL, models_dir: Path | None = None):
    """Demucs model or bag of models, from ``models_dir`` / $SONIC_DEMUCS_DIR or Demucs' cache.

    Raises :class:`StemWeightsError` (naming both ways to provide weights) when none load.
    """
    from demucs.pretrained import get_model

    folder = models_dir or (
        Path(os.environ[MODELS_DIR_ENV]) if os.environ.get(MODELS_DIR_ENV) else None
    )
    if folder is not None:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise StemWeightsError(
                f"no Demucs weights for '{name}': the models folder {folder} does not exist. "
                + _weights_help(name)
            )
    try:
        model = get_model(name, repo=folder) if folder is not None else get_model(name)
    except (Exception, SystemExit) as exc:  # demucs calls sys.exit() on some load errors
        where = f"in {folder}" if folder is not None else "from Demucs' download or cache"
        reason = str(exc).strip() or type(exc).__name__
        raise StemWeightsError(
            f"no Demucs weights for '{name}' {where} ({reason}). " + _weights_help(name)
        ) from None
    model.eval()
    return model


def model_segment(model) -> float:
    """Seconds per chunk the model runs on (the shortest of a bag's models)."""
    models = list(model.models) if isinstance(model, BagOfModels) else [model]
    return min(float(m.segment) for m in models)


def _check_segment(model, segment: float | None) -> None:
    if segment is None:
        return
    models = list(model.models) if isinstance(model, BagOfModels) else [model]
    limit = min((float(m.segment) for m in models if isinstance(m, HTDemucs)), default=None)
    if limit is not None and segment > limit:
        raise ValueError(f"segment {segment} s is longer than this model's {limit:.2f} s")
