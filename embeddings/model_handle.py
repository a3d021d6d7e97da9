"""A genre model known by its identity before it is loaded: no torch until there is work.

A re-run of ``sonic ingest`` over an unchanged library has nothing to analyse, yet
loading torch and the network alone took several seconds. What the plan needs is
only the model's identity (its id, genres and embedding size), and the catalog
remembers that for each checkpoint file it has seen (keyed by size and mtime). So
the CLI hands the pipeline a :class:`LazyModel`, and the pipeline loads the network
only when a file needs analysing.

This module imports nothing heavy: it is read at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embeddings.checkpoint import GenreModel

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "genre_resnet18.pt"


@dataclass(frozen=True)
class ModelIdentity:
    """What a catalog needs to know of a model to plan a run: not its weights."""

    model_id: str
    genres: tuple[str, ...]
    embedding_dim: int
    trained: bool

    @classmethod
    def of(cls, model: GenreModel) -> ModelIdentity:
        return cls(model.model_id, tuple(model.genres), model.embedding_dim, model.trained)

    def to_dict(self) -> dict:
        return {**asdict(self), "genres": list(self.genres)}

    @classmethod
    def from_dict(cls, data: dict) -> ModelIdentity:
        return cls(
            str(data["model_id"]), tuple(data["genres"]), int(data["embedding_dim"]),
            bool(data["trained"]),
        )  # fmt: skip


class LazyModel:
    """A model whose identity is known and whose network is loaded on first :meth:`load`."""

    def __init__(
        self,
        identity: ModelIdentity,
        loader: Callable[[], GenreModel],
        checkpoint: Path | None = None,
    ) -> None:
        """``checkpoint``: the file ``loader`` reads, if it reads one (see :meth:`shippable`)."""
        self.identity = identity
        self._loader = loader
        self.checkpoint = checkpoint
        self._model: GenreModel | None = None

    @property
    def model_id(self) -> str:
        return self.identity.model_id

    @property
    def genres(self) -> list[str]:
        return list(self.identity.genres)

    @property
    def embedding_dim(self) -> int:
        return self.identity.embedding_dim

    @property
    def trained(self) -> bool:
        return self.identity.trained

    def load(self) -> GenreModel:
        """The network; raises if the checkpoint is no longer the one remembered."""
        if self._model is None:
            model = self._loader()
            if ModelIdentity.of(model) != self.identity:
                raise RuntimeError(
                    f"the checkpoint changed while the run started: expected model "
                    f"{self.identity.model_id}, found {model.model_id}; run the ingest again"
                )
            self._model = model
        return self._model

    def shippable(self) -> GenreModel | LazyModel:
        """This model as another process (a Ray actor) should receive it.

        Not loaded yet and read from a file: a :class:`LazyModel` of the same identity
        that loads from the file's bytes, carried with it. A Ray driver sends that
        rather than import torch and load the network only to pickle it (1.3 CPU-s,
        and as long on the critical path before any actor starts; the bytes are the
        fp16 file, half the size of the pickled fp32 network). The receiver's
        :meth:`load` checks the identity, as here: a checkpoint replaced since the
        catalog remembered it fails the run rather than mixing two models.
        Loaded already, or not from a file: the network itself.
        """
        if self._model is not None or self.checkpoint is None:
            return self.load()
        data = self.checkpoint.read_bytes()
        return LazyModel(self.identity, partial(_load_bytes, data, str(self.checkpoint)))


def untrained_warning(model_id: str) -> str:
    """What a user is told when a model's weights are untrained (on load, or on Ray)."""
    return (
        f"model {model_id} has UNTRAINED weights: genre predictions are "
        "meaningless and sound-alike search uses random convolutional features"
    )


def _load_bytes(data: bytes, name: str) -> GenreModel:
    """The model in a checkpoint file's bytes (a module-level function: it is pickled)."""
    from embeddings.checkpoint import load_model_bytes

    return load_model_bytes(data, name)


def shippable(model: GenreModel | LazyModel) -> GenreModel | LazyModel:
    """``model`` as another process should receive it (see :meth:`LazyModel.shippable`)."""
    return model.shippable() if isinstance(model, LazyModel) else model


def loaded(model: GenreModel | LazyModel) -> GenreModel:
    """The network of ``model``, loading it if it is a :class:`LazyModel`."""
    return model.load() if isinstance(model, LazyModel) else model
