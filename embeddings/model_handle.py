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

    def __init__(self, identity: ModelIdentity, loader: Callable[[], GenreModel]) -> None:
        self.identity = identity
        self._loader = loader
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


def loaded(model: GenreModel | LazyModel) -> GenreModel:
    """The network of ``model``, loading it if it is a :class:`LazyModel`."""
    return model.load() if isinstance(model, LazyModel) else model
