"""One PostgreSQL catalog shared: concurrent ingests split the files, several servers read.

What SQLite serialises (one writer per catalog, one index file beside it) must be
correct on PostgreSQL with real processes: two ``sonic ingest`` runs at once, each
with its own data directory as on two machines, analyse every file exactly once;
two ``sonic serve`` processes keep their own FAISS indexes caught up when a third
process ingests more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from service_fixtures import free_port
from sqlalchemy import func, select

from audio_fixtures import chord, noise, write
from catalog.schema import Segment, Track
from catalog.store import Catalog

REPO = Path(__file__).resolve().parents[1]
TRACKS = 12


@pytest.fixture
def shared_url(postgres_server, monkeypatch) -> str:
    url = postgres_server.new_database("shared")
    monkeypatch.setenv("SONIC_DATABASE_URL", url)
    return url


def _library(root: Path, count: int = TRACKS, seconds: float = 6.0) -> list[Path]:
    files = []
    for i in range(count):
        audio = chord([110 + 9 * i, 220 + 13 * i], seconds, 22050)
        audio = audio + noise(seconds, 22050, seed=i, amp=0.05)
        files.append(write(root / f"album{i % 3}" / f"track{i:02d}.flac", audio, 22050))
    bad = root / "album0" / "broken.flac"
    bad.write_text("not audio\n" * 50)
    return files


def _sonic(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ui.cli", *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )  # fmt: skip


def _ingest(library: Path, data_dir: Path) -> subprocess.Popen:
    return _sonic(
        "ingest", str(library), "--data-dir", str(data_dir), "--workers", "1",
        "--inference-threads", "1", "--no-heatmaps", "--no-progress", "--json",
    )  # fmt: skip


def test_two_concurrent_ingests_analyse_each_file_once(tmp_path, shared_url):
    library = tmp_path / "music"
    files = _library(library)
    first = _ingest(library, tmp_path / "node-a")
    second = _ingest(library, tmp_path / "node-b")
    summaries = []
    for proc in (first, second):
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err
        summaries.append(json.loads(out))
    a, b = summaries

    # every file analysed exactly once, the broken one failed once: the work was split
    assert a["analysed"] + b["analysed"] == TRACKS, (a, b)
    assert len(a["failed"]) + len(b["failed"]) == 1, (a["failed"], b["failed"])
    assert a["analysed"] > 0 and b["analysed"] > 0, "the two runs overlapped and shared"
    assert a["files_seen"] == b["files_seen"] == TRACKS + 1

    with Catalog(tmp_path / "node-a") as catalog, catalog.sessions() as s:
        rows = s.execute(select(Track.id, Track.path, Track.status, Track.n_segments)).all()
        assert len(rows) == TRACKS + 1 and len({r.path for r in rows}) == TRACKS + 1
        assert {r.path for r in rows if r.status == "ok"} == {str(f) for f in files}
        segments = dict(
            s.execute(select(Segment.track_id, func.count()).group_by(Segment.track_id)).all()
        )
        assert all(segments.get(r.id, 0) == (r.n_segments or 0) for r in rows)
        # each node's index caught up with the other's commits: it holds every track
        ok = {r.id for r in rows if r.status == "ok"}
        assert set(catalog.index().ids().tolist()) == ok
    with Catalog(tmp_path / "node-b") as catalog:
        assert set(catalog.index().ids().tolist()) == ok

    again = _ingest(library, tmp_path / "node-c")
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    rerun = json.loads(out)
    assert rerun["analysed"] == 0 and rerun["skipped"] == TRACKS + 1


def _health(base: str) -> dict:
    return httpx.get(f"{base}/health", timeout=10).json()


def _start_server(data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SONIC_API_TOKEN"}
    proc = _sonic(
        "serve", "--data-dir", str(data_dir), "--port", str(port), "--json", env=env
    )  # the URL comes from $SONIC_DATABASE_URL, as for any sonic command
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            _health(base)
            return proc, base
        except httpx.TransportError:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "sonic serve did not start"
            time.sleep(0.3)


def test_several_servers_read_one_catalog_and_follow_its_version(tmp_path, shared_url, model):
    from helpers import run_ingest

    library = tmp_path / "music"
    _library(library, count=4, seconds=6.0)
    run_ingest([library], tmp_path / "ingest-node", model)
    servers = [_start_server(tmp_path / f"server-{i}") for i in range(2)]
    try:
        for _, base in servers:
            assert _health(base)["tracks_indexed"] == 4
        before = {base: _health(base)["index_version"] for _, base in servers}

        new = write(library / "late" / "new.flac", chord([97, 146], 6.0, 22050), 22050)
        run_ingest([library], tmp_path / "ingest-node", model)
        with Catalog(tmp_path / "ingest-node") as catalog:
            new_id = catalog.track_by_path(str(new)).id
            version = catalog.index_version()

        for _, base in servers:  # no restart, no shared index file: each caught up itself
            health = _health(base)
            assert health["tracks_indexed"] == 5
            assert health["index_version"] == version > before[base]
            neighbours = httpx.get(
                f"{base}/tracks/{new_id}/similar", params={"k": 3}, timeout=30
            ).json()["neighbours"]
            assert len(neighbours) == 3 and new_id not in {n["id"] for n in neighbours}

        new.unlink()  # a track leaves the catalog: both indexes drop it
        run_ingest([library], tmp_path / "ingest-node", model)
        for _, base in servers:
            assert _health(base)["tracks_indexed"] == 4
            assert httpx.get(f"{base}/tracks/{new_id}/similar", timeout=30).status_code != 200
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=30)


def _synthetic_rows(n: int, dim: int, version: int, model_id: str, seed: int = 0):
    """Rows as an ingest leaves them, with clustered unit vectors (as bench/query.py)."""
    from datetime import datetime

    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((32, dim)).astype(np.float32)
    labels = rng.integers(0, 32, n)
    vectors = centres[labels] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    now = datetime(2024, 1, 1)
    rows = [
        {
            "id": i + 1, "path": f"/music/{i:06d}.flac", "size": 1, "mtime_ns": 0,
            "status": "ok", "model_id": model_id, "embedding": vectors[i].tobytes(),
            "embedding_version": version, "added_at": now, "updated_at": now,
        }
        for i in range(n)
    ]  # fmt: skip
    return rows, vectors


def test_ivf_is_built_from_the_database_in_batches(tmp_path, shared_url, monkeypatch):
    """At IVF sizes the approximate index streams from PostgreSQL, never copying the vectors."""
    from sqlalchemy import insert

    from catalog import index_builds
    from catalog.index import VectorIndex

    dim, n = 64, 3000
    with Catalog(tmp_path) as catalog:
        catalog.activate_model("m", ["a", "b"], dim)
        rows, vectors = _synthetic_rows(n, dim, catalog.index_version(), "m")
        with catalog.sessions.begin() as s:
            s.execute(insert(Track), rows)
    streamed: list[int] = []
    real_stream = index_builds.stream_indexable

    def counting_stream(catalog, dim):
        for ids, batch in real_stream(catalog, dim):
            streamed.append(len(ids))
            yield ids, batch

    monkeypatch.setattr(index_builds, "BATCH_ROWS", 400)
    monkeypatch.setattr(index_builds, "stream_indexable", counting_stream)

    def no_copy(self):
        raise AssertionError("the batched build must not copy every vector")

    with Catalog(tmp_path) as catalog:
        index = catalog.index()
        assert len(index) == n
        monkeypatch.setattr(VectorIndex, "vectors", no_copy)
        assert index.build_ann("ivf") == "ivf"
        status = index.ann_status()
        assert status["searching_with"] == "ivf" and status["params"]["built_from"] == "database"
        assert status["params"]["tuned_recall_at_10"] >= 0.9
        assert sum(streamed) == n and max(streamed) <= 400 and len(streamed) >= n // 400
        hits = 0
        for q in range(0, n, 60):
            approx = {i for i, _ in index.search(vectors[q], 10)}
            exact = {i for i, _ in index.search(vectors[q], 10, exact=True)}
            hits += len(approx & exact)
        assert hits / (10 * len(range(0, n, 60))) >= 0.9


def test_database_url_option_and_its_errors(tmp_path, postgres_server, monkeypatch):
    """--database-url selects the PostgreSQL catalog; a bad URL is a clear error, no trace."""
    from typer.testing import CliRunner

    from ui.cli import app

    url = postgres_server.new_database("cli")
    runner = CliRunner()
    result = runner.invoke(
        app, ["status", "--data-dir", str(tmp_path), "--database-url", url, "--json"]
    )
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["database"].startswith("postgresql+psycopg://") and "cli_" in status["database"]
    assert not (tmp_path / "catalog.db").exists()  # no SQLite file was made beside it

    for bad, words in (
        ("mysql://u@h/db", "unsupported database"),
        ("not a url", "not a database URL"),
        (url.rsplit(":", 1)[0] + ":1/nowhere", "cannot open the catalog database"),
    ):
        result = runner.invoke(app, ["status", "--data-dir", str(tmp_path), "--database-url", bad])
        assert result.exit_code == 1, (bad, result.output)
        assert words in result.output and "Traceback" not in result.output
