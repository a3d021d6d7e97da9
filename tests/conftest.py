"""Shared fixtures: a synthesised library built once, copied per test that changes it."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from audio_fixtures import Library, build_library, copy_library
from embeddings.checkpoint import GenreModel, UntrainedModelWarning, load_model


@pytest.fixture(scope="session")
def pristine_library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    return build_library(tmp_path_factory.mktemp("pristine") / "music")


@pytest.fixture
def library(pristine_library: Library, tmp_path: Path) -> Library:
    return copy_library(pristine_library, tmp_path / "music")


@pytest.fixture(scope="session")
def model() -> GenreModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        return load_model()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
