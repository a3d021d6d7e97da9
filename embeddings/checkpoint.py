"""Saving and loading genre-model checkpoints.

A checkpoint is self-describing: it carries the architecture name, the genre
names, the front-end parameters and a model id, so a catalog can tell which model
analysed each track and re-analyse when the model changes. Weights are stored in
fp16 (half the size, no measurable change in predictions) and loaded as fp32.

A checkpoint is of one of two kinds:

- ``genre`` (the default): a network with a genre head, what ingest and the
  explanations use;
- ``backbone``: a self-supervised pretrained network (``sonic pretrain``) with no
  genres and an empty head. Its embeddings can be evaluated, and ``sonic train
  --init`` fine-tunes it into a genre model, but it cannot classify, so
  :func:`load_model` (what ingest and the service call) refuses it with a message
  that says how to fine-tune it.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from embeddings.atomic import atomic_write
from embeddings.frontend import FrontendConfig
from embeddings.model import build_model, build_seeded_model
from embeddings.model_handle import (
    DEFAULT_CHECKPOINT,  # noqa: F401 (re-exported)
    WEIGHTS_DIR,  # noqa: F401 (re-exported)
    untrained_warning,
)

GTZAN_GENRES: tuple[str, ...] = (
    "blues", "classical", "country", "disco", "hiphop",
    "jazz", "metal", "pop", "reggae", "rock",
)  # fmt: skip

FORMAT_VERSION = 1
UNTRAINED_SEED = 0
KINDS: tuple[str, ...] = ("genre", "backbone")


class BackboneOnlyError(ValueError):
    """A pretrained backbone was given where a genre model is needed."""


class UntrainedModelWarning(UserWarning):
    """Raised as a warning when predictions come from randomly initialised weights."""


@dataclass
class GenreModel:
    """A network plus everything needed to feed it and to name what it predicts."""

    network: nn.Module
    arch: str
    genres: list[str]
    frontend: FrontendConfig
    model_id: str
    trained: bool
    info: dict = field(default_factory=dict)
    kind: str = "genre"

    @property
    def embedding_dim(self) -> int:
        return int(self.network.embedding_dim)

    @property
    def is_backbone(self) -> bool:
        """True for a pretrained network without a genre head."""
        return self.kind == "backbone" or not self.genres


def _weights_digest(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def _half_state(network: nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
        for k, v in network.state_dict().items()
    }


def save_checkpoint(
    path: Path,
    network: nn.Module,
    arch: str,
    genres: list[str],
    frontend: FrontendConfig,
    trained: bool = True,
    info: dict | None = None,
    kind: str = "genre",
) -> str:
    """Write a fp16 checkpoint atomically and return its model id."""
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}; choose one of {KINDS}")
    if kind == "genre" and not genres:
        raise ValueError("a genre checkpoint needs its genre names")
    state = _half_state(network)
    model_id = f"{arch}-{_weights_digest(state)}"
    payload = {
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "genres": list(genres),
        "frontend": frontend.to_dict(),
        "model_id": model_id,
        "trained": trained,
        "kind": kind,
        "info": info or {},
        "state_dict": state,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, lambda fh: fh.write(buffer.getvalue()))
    return model_id


def load_checkpoint(path: Path) -> GenreModel:
    """Load a checkpoint written by :func:`save_checkpoint` (fp32, eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model checkpoint not found: {path}")
    return _from_source(path, str(path))


def checkpoint_from_bytes(data: bytes, name: str) -> GenreModel:
    """:func:`load_checkpoint` of a checkpoint file's bytes, read elsewhere.

    A Ray driver sends the file's bytes to its actors rather than the network, so
    that it never imports torch itself; ``name`` is the file the bytes came from,
    for error messages.
    """
    return _from_source(io.BytesIO(data), name)


def _from_source(source: Path | io.BytesIO, name: str) -> GenreModel:
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        raise ValueError(f"{name} is not a readable Sonic Catalog checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise ValueError(f"{name} is not a Sonic Catalog checkpoint (no state_dict)")
    network = build_model(payload["arch"], len(payload["genres"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    network.load_state_dict(state)
    network.eval()
    return GenreModel(
        network=network,
        arch=payload["arch"],
        genres=list(payload["genres"]),
        frontend=FrontendConfig.from_dict(payload["frontend"]),
        model_id=payload["model_id"],
        trained=bool(payload.get("trained", True)),
        info=dict(payload.get("info", {})),
        kind=str(payload.get("kind", "genre")),
    )


def untrained_model(arch: str = "resnet18", genres: tuple[str, ...] = GTZAN_GENRES) -> GenreModel:
    """A seeded random network: same every run, so its embeddings are reproducible."""
    network = build_seeded_model(arch, len(genres), UNTRAINED_SEED)
    return GenreModel(
        network=network,
        arch=arch,
        genres=list(genres),
        frontend=FrontendConfig(),
        model_id=f"{arch}-untrained-seed{UNTRAINED_SEED}",
        trained=False,
        info={"note": "randomly initialised; genre predictions are meaningless"},
    )


def load_default_model() -> GenreModel:
    """The model shipped in the package, or a seeded untrained one if none ships."""
    if DEFAULT_CHECKPOINT.is_file():
        return load_checkpoint(DEFAULT_CHECKPOINT)
    return untrained_model()


def load_model(path: Path | None = None) -> GenreModel:
    """A user's checkpoint when given, else the default; warns on untrained weights.

    Refuses a pretrained backbone (:class:`BackboneOnlyError`): it has no genre head,
    and indexing a library with it would store genre labels it cannot predict.
    """
    return _usable(load_checkpoint(path) if path else load_default_model(), path)


def load_model_bytes(data: bytes, name: str) -> GenreModel:
    """:func:`load_model` of a checkpoint file's bytes (see :func:`checkpoint_from_bytes`)."""
    return _usable(checkpoint_from_bytes(data, name), Path(name))


def _usable(model: GenreModel, path: Path | None) -> GenreModel:
    """``model``, refused if it is a backbone, with a warning if it is untrained."""
    if model.is_backbone:
        raise BackboneOnlyError(
            f"{path} is a self-supervised pretrained backbone ({model.model_id}) without "
            "a genre head, so it cannot classify or index tracks by itself. Fine-tune it "
            f"first: `sonic train DATASET --init {path}`, then pass the checkpoint that "
            "writes to --model."
        )
    if not model.trained:
        warnings.warn(
            untrained_warning(model.model_id),
            UntrainedModelWarning,
            stacklevel=3,  # the caller of load_model
        )
    return model
