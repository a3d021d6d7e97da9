"""Two processes at one catalog: migrations serialised, a busy catalog refused at once (issue 28).

Two ingests started together on a new data directory used to crash one of them with
"table tracks already exists" (both ran the first migration), and a second ingest on
a busy catalog refused only after the model had loaded, ~30 s on a loaded 2-core box.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from audio_fixtures import tone, write
from catalog.db import current_revision, head_revision
from catalog.store import Catalog
from ingest.lock import CatalogBusyError, catalog_lock

REPO = Path(__file__).resolve().parents[1]

OPEN_AT = """
import sys, time
start = float(sys.argv[2])
while time.time() < start:
    pass
from catalog.store import Catalog
Catalog(sys.argv[1]).close()
print("opened")
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.mark.parametrize("trial", range(4))
def test_processes_opening_a_new_catalog_together_all_succeed(tmp_path: Path, trial: int):
    data_dir = tmp_path / f"data{trial}"
    start = time.time() + 3.0  # every process past its imports, then all at once
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT, str(data_dir), str(start)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for _ in range(3)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode()
        assert out.strip() == b"opened"
    with Catalog(data_dir) as catalog:
        assert current_revision(catalog.engine) == head_revision()
        with catalog.engine.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"


def test_the_lock_refuses_another_holder_at_once(tmp_path: Path):
    with catalog_lock(tmp_path) as held:
        assert held.covers(tmp_path) and not held.covers(tmp_path / "other")
        with pytest.raises(CatalogBusyError, match="another ingest"):
            with catalog_lock(tmp_path):  # another writer, even in this process
                pass
        other = subprocess.run(
            [sys.executable, "-c", HOLDS, str(tmp_path)], env=_env(), capture_output=True,
            timeout=60,
        )  # fmt: skip
        assert other.stdout.strip() == b"busy", other.stderr.decode()
    with catalog_lock(tmp_path):  # released: free again
        pass


HOLDS = """
import sys
from ingest.lock import CatalogBusyError, catalog_lock
try:
    with catalog_lock(sys.argv[1]):
        print("free")
except CatalogBusyError:
    print("busy")
"""


def test_a_second_ingest_on_a_busy_catalog_is_refused_before_the_model_loads(
    tmp_path: Path, data_dir: Path
):
    song = write(tmp_path / "music" / "a.wav", tone(440, 3.0), 22050)
    Catalog(data_dir).close()
    with catalog_lock(data_dir):  # another ingest is writing
        started = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "ui.cli", "ingest", str(song),
             "--data-dir", str(data_dir), "--no-progress"],
            cwd=REPO, env=_env(), capture_output=True, timeout=120,
        )  # fmt: skip
        took = time.monotonic() - started
    assert second.returncode == 1
    assert "another ingest is already writing" in second.stderr.decode()
    # refused before torch was even imported, so in moments whatever the machine's load
    imported = {line.rsplit(b"|", 1)[-1].strip() for line in second.stderr.splitlines()}
    assert b"torch" not in imported, "the model was loaded before the lock was tried"
    assert took < 30


LOWER = """
import os
from ui.cli import _lower_priority
start = os.getpriority(os.PRIO_PROCESS, 0)
_lower_priority(5)
first = os.getpriority(os.PRIO_PROCESS, 0)
_lower_priority(3)  # never back up: only root could, and a user asked for 5 already
pid = os.fork()
if pid == 0:  # what a decode worker started now would run at
    print(max(start, 5), first, os.getpriority(os.PRIO_PROCESS, 0))
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_ingest_runs_at_a_lower_cpu_priority_that_its_workers_inherit():
    out = subprocess.run(
        [sys.executable, "-c", LOWER], cwd=REPO, env=_env(), capture_output=True, timeout=60
    )
    expected, first, child = out.stdout.split()
    assert first == child == expected, out.stderr.decode()


def _imported(stderr: bytes) -> set[bytes]:
    return {line.rsplit(b"|", 1)[-1].strip() for line in stderr.splitlines()}


def test_a_rerun_with_nothing_to_do_never_loads_torch(tmp_path: Path, data_dir: Path):
    music = tmp_path / "music"
    write(music / "a.wav", tone(440, 3.0), 22050)
    write(music / "b.wav", tone(330, 3.0), 22050)
    command = [sys.executable, "-X", "importtime", "-m", "ui.cli", "ingest", str(music),
               "--data-dir", str(data_dir), "--no-progress", "--no-heatmaps"]  # fmt: skip
    first = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, timeout=300)
    assert first.returncode == 0, first.stderr.decode()[-2000:]
    assert b"torch" in _imported(first.stderr)
    again = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    assert b"unchanged 2" in again.stdout
    assert b"torch" not in _imported(again.stderr), "a no-op re-run loaded the model"
    write(music / "c.wav", tone(550, 3.0), 22050)  # new work: the model loads after all
    third = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, timeout=300)
    assert third.returncode == 0, third.stderr.decode()[-2000:]
    assert b"indexed 1, unchanged 2" in third.stdout
    assert b"torch" in _imported(third.stderr)


def test_a_remembered_checkpoint_is_forgotten_when_the_file_changes(tmp_path: Path):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"first version")
    identity = {"model_id": "m1", "genres": ["a"], "embedding_dim": 8, "trained": True}
    with Catalog(tmp_path / "data") as catalog:
        catalog.remember_checkpoint(checkpoint, identity)
        assert catalog.remembered_checkpoint(checkpoint) == identity
        checkpoint.write_bytes(b"another version, another size")
        assert catalog.remembered_checkpoint(checkpoint) is None
        assert catalog.remembered_checkpoint(tmp_path / "absent.pt") is None


def test_a_lazy_model_refuses_a_checkpoint_that_is_not_the_one_remembered(model):
    from embeddings.model_handle import LazyModel, ModelIdentity

    right = LazyModel(ModelIdentity.of(model), lambda: model)
    assert right.model_id == model.model_id and right.load() is model
    stale = ModelIdentity("someone-else", tuple(model.genres), model.embedding_dim, True)
    with pytest.raises(RuntimeError, match="checkpoint changed"):
        LazyModel(stale, lambda: model).load()
