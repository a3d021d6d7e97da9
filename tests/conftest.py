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


# -- the catalog's database: SQLite, or a real PostgreSQL server -------------------------

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL server for the session (see ``tests/postgres_server.py``)."""
    from postgres_server import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[dev,scale]')")
    server = PostgresServer(bindir).start()
    try:
        yield server
    finally:
        server.stop()


TEST_DATABASE_URLS: set[str] = set()  # the URLs of databases the tests created


@pytest.fixture(autouse=True)
def _no_ambient_database_url(monkeypatch):
    """A catalog URL in the developer's shell must never point the tests at a real catalog.

    A URL of a database made by these fixtures (a module-wide one, see
    :func:`backend_url`) is left in place.
    """
    import os

    if os.environ.get("SONIC_DATABASE_URL") not in TEST_DATABASE_URLS:
        monkeypatch.delenv("SONIC_DATABASE_URL", raising=False)


def backend_url(request, backend: str) -> str | None:
    """For fixtures wider than one test: None for SQLite, or a fresh PostgreSQL database."""
    if backend == "sqlite":
        return None
    url = request.getfixturevalue("postgres_server").new_database()
    TEST_DATABASE_URLS.add(url)
    return url


@pytest.fixture(params=BACKENDS)
def catalog_url(request, monkeypatch) -> str | None:
    """Run the test on each backend: None (the SQLite file) or a fresh PostgreSQL database.

    The URL is also put in ``$SONIC_DATABASE_URL``, so every ``Catalog(data_dir)`` of
    the test, and every ``sonic`` subprocess it starts, opens that database.
    """
    if request.param == "sqlite":
        return None
    url = backend_url(request, request.param)
    monkeypatch.setenv("SONIC_DATABASE_URL", url)
    return url
