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


def weights_missing(name: str = DEFAULT_MODEL, models_dir: Path | None = None) -> str | None:
    """Why ``name``'s weights cannot load without a download, or None when they are here.

    A look at files only (no model is loaded, nothing is fetched), so a face can say at
    start-up what fixes separation instead of failing after a long wait: with a folder
    (``models_dir`` / $SONIC_DEMUCS_DIR), its ``NAME.yaml`` and every ``SIG*.th`` it
    lists; without one, the files Demucs would have downloaded into torch hub's cache.
    """
    import torch
    import yaml
    from demucs.pretrained import REMOTE_ROOT

    folder = models_dir or (
        Path(os.environ[MODELS_DIR_ENV]) if os.environ.get(MODELS_DIR_ENV) else None
    )
    if folder is not None:
        folder = Path(folder).expanduser()
        spec = folder / f"{name}.yaml"
        if not spec.is_file():
            return (
                f"no Demucs weights for '{name}' in {folder} (no {spec.name}). "
                + _weights_help(name)
            )
        sigs = yaml.safe_load(spec.read_text()).get("models", [])
        have = {p.stem.rsplit("-", 1)[0] for p in folder.glob("*.th")}
        lost = [s for s in sigs if s not in have]
        if lost:
            return (
                f"no Demucs weights for '{name}' in {folder} (missing {', '.join(lost)}.th). "
                + _weights_help(name)
            )
        return None
    spec = Path(REMOTE_ROOT) / f"{name}.yaml"
    if not spec.is_file():
        return f"Demucs has no model named '{name}'"
    sigs = yaml.safe_load(spec.read_text()).get("models", [])
    files = [
        line.strip()
        for line in (Path(REMOTE_ROOT) / "files.txt").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "root:"))
    ]
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    for sig in sigs:
        wanted = [f for f in files if f.startswith(sig + "-")]
        if not any((cache / f).is_file() for f in wanted):
            return (
                f"no Demucs weights for '{name}' in torch hub's cache ({cache}). "
                + _weights_help(name)
            )
    return None
