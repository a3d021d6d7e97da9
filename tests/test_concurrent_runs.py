"""Two processes at one catalog: migrations serialised, a busy catalog refused at once (issue 28).

Two ingests started together on a new data directory used to crash one of them with
"table tracks already exists" (both ran the first migration), and a second ingest on
a busy catalog refused only after the model had loaded, ~30 s on a loaded 2-core box.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
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


def test_the_lock_refuses_another_holder_at_once_and_reenters_for_its_own(tmp_path: Path):
    with catalog_lock(tmp_path):
        with catalog_lock(tmp_path):  # the CLI holds it around the library call
            pass
        errors: list[Exception] = []

        def other_thread() -> None:
            try:
                with catalog_lock(tmp_path):
                    pass
            except CatalogBusyError as exc:
                errors.append(exc)

        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join(5)
        assert len(errors) == 1 and "another ingest" in str(errors[0])
        held = subprocess.run(
            [sys.executable, "-c", HOLDS, str(tmp_path)], env=_env(), capture_output=True,
            timeout=60,
        )  # fmt: skip
        assert held.stdout.strip() == b"busy", held.stderr.decode()
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
