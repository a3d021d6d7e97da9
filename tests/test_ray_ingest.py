"""``sonic ingest --ray`` on a real multi-node Ray cluster started on this machine.

One cluster serves the whole module (Ray is slow to start on a small, shared box):
a head and a second node, one CPU each, small object stores, no dashboard. Tests
that need a third node add it and take it away again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from audio_fixtures import chord, clicks, noise, tag, write
from catalog.schema import TrackGenre
from catalog.store import Catalog
from helpers import assert_index_consistent, run_ingest, tracks_by_path
from ingest.distributed import DistributedIngestError, RayOptions, ingest_on_ray
from ingest.pipeline import IngestOptions, ProgressSink

ray = pytest.importorskip("ray", reason="Ray is in the scale extra: pip install -e '.[scale]'")
from ray.cluster_utils import Cluster  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SR = 22050
NODE = {"num_cpus": 1, "object_store_memory": 150 * 2**20}


@pytest.fixture(scope="module")
def cluster():
    saved = os.environ.get("PYTHONPATH")
    # Ray's worker processes import this tree's packages (a real cluster installs them)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), saved) if p)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # tests reach no network
    cluster = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    cluster.add_node(**NODE)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def _library(root: Path, count: int, seconds: float = 7.0) -> Path:
    for i in range(count):
        audio = chord([110 + 7 * i, 220 + 11 * i], seconds, SR)
        audio = audio + noise(seconds, SR, seed=i, amp=0.05)
        if i % 3 == 0:
            audio = audio + clicks(seconds, SR, bpm=90 + 5 * i)
        suffix = ("flac", "wav", "ogg")[i % 3]
        write(root / f"album{i % 2}" / f"track{i:02d}.{suffix}", audio, SR)
    return root


def _on_ray(roots, data_dir: Path, model, address: str, progress=None, **ray_options):
    with Catalog(data_dir) as catalog:
        return ingest_on_ray(
            list(roots), catalog, model, IngestOptions(), progress, None,
            RayOptions(address=address, **ray_options),
        )  # fmt: skip


class _Notes(ProgressSink):
    """A progress sink that keeps the notes a run shows the user."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)


def _committed(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM tracks WHERE status = 'ok'").fetchone()[0]
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def _genre_probabilities(data_dir: Path) -> dict[tuple[int, str], float]:
    with Catalog(data_dir) as catalog, catalog.sessions() as s:
        rows = s.execute(select(TrackGenre.track_id, TrackGenre.genre, TrackGenre.probability))
        return {(t, g): p for t, g, p in rows}


def _assert_complete(data_dir: Path, library: Path, count: int) -> None:
    """Every file once, analysed, whole, and the index agreeing with the database."""
    rows = tracks_by_path(data_dir)
    assert len(rows) == count
    assert sorted(rows) == sorted(str(p) for p in library.rglob("track*"))
    assert {t.status for t in rows.values()} == {"ok"}, {t.path: t.error for t in rows.values()}
    with sqlite3.connect(data_dir / "catalog.db") as conn:
        for track_id, n_segments in conn.execute("SELECT id, n_segments FROM tracks"):
            (segments,) = conn.execute(
                "SELECT count(*) FROM segments WHERE track_id = ?", (track_id,)
            ).fetchone()
            assert segments == n_segments
        (genre_rows,) = conn.execute("SELECT count(*) FROM track_genres").fetchone()
    assert genre_rows == count * 10
    assert_index_consistent(data_dir)


def test_the_node_side_run_hands_back_outcomes_and_never_touches_a_catalog(
    tmp_path, model, monkeypatch
):
    """NodeRun alone (no cluster): what an actor does with a batch, on this process."""
    from concurrent.futures import ThreadPoolExecutor

    import ingest.pipeline as pipeline
    from embeddings.inference import Predictor
    from ingest.ray_actor import NodeRun
    from ingest.worker import Task

    monkeypatch.setattr(pipeline, "INDEX_SAVE_SECONDS", 0.0)  # the driver's chore, every turn
    library = _library(tmp_path / "music", 2)
    blocked = tmp_path / "data" / "heatmaps"
    blocked.parent.mkdir()
    blocked.write_text("a file where the heatmaps folder should be")
    run = NodeRun(model, IngestOptions(workers=1), blocked)
    run.predictor, run.threads = Predictor(model, "cpu"), 1
    run.executor = ThreadPoolExecutor(1)
    pool = pipeline._WorkerPool(1, model.frontend.to_dict(), frozenset())
    tasks = [
        Task(0, str(library / "album0" / "track00.flac")),
        Task(1, str(library / "album1" / "track01.wav")),
        Task(2, str(tmp_path / "not-mounted-here" / "track.flac")),
    ]
    try:
        for task in tasks:
            run.states[task.task_id] = run._new_state(task)
            pool.submit(task)
        run._drain(pool)
    finally:
        pool.close()
        run.executor.shutdown()
    outcomes = {o.task_id: o for o in run.outcomes}
    assert sorted(outcomes) == [0, 1] + [2] and run.states == {}
    for task_id in (0, 1):
        ok = outcomes[task_id]
        assert ok.kind == "ok" and ok.facts.content_hash and ok.analysis.embedding.shape == (512,)
        assert ok.analysis.explanation is None  # the data directory was not writable
        assert "cannot write to the data directory" in ok.analysis.warning
    lost = outcomes[2]
    assert (lost.kind, lost.node_unreadable) == ("fail", True)
    assert "cannot read file" in lost.reason


def test_an_actor_analyses_set_up_as_a_local_run_is(cluster, tmp_path, model):
    """Two settings a local run makes in IngestRun._analyse, missed by the actor once each:
    NumPy's BLAS on one thread (OpenBLAS's threads spun on every small product: 3.5 CPU-s
    of 20 per hour of audio) and a network call queued behind each inference thread's
    running one (without it the threads waited for the actor's loop: cores 1.7 busy of 2)."""
    from dataclasses import asdict

    import torch
    from threadpoolctl import threadpool_info

    from ingest.ray_actor import TrackAnalyser

    def blas_threads() -> list[int]:  # NumPy's own (FAISS ships another, OpenMP-threaded)
        libs = threadpool_info()
        return [lib["num_threads"] for lib in libs if "numpy" in lib["filepath"]]

    before, torch_threads = blas_threads(), torch.get_num_threads()
    assert before and max(before) > 1, f"NumPy's BLAS threads not seen or already 1: {before}"
    options = asdict(IngestOptions(workers=1, inference_threads=2))
    actor = TrackAnalyser([ray.put(model)], options, str(tmp_path / "heatmaps"), frozenset())
    try:
        assert blas_threads() == [1] * len(before)
        assert actor.run.threads == 2 and actor.run.yielder.slots() == 3
    finally:
        actor.close()
        torch.set_num_threads(torch_threads)  # the actor set one op thread per call
    assert blas_threads() == before  # given back when the actor closes


def test_ray_ingest_matches_a_local_ingest(cluster, tmp_path, model):
    library = _library(tmp_path / "music", 8)
    tag(library / "album0" / "track00.flac", "First", "Someone", "An Album", 1)
    (library / "album1" / "broken.mp3").write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x10 not audio")
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"

    local = run_ingest([library], local_dir, model)
    remote = _on_ray([library], ray_dir, model, cluster.address, files_per_batch=2)

    assert (remote.analysed, len(remote.failed)) == (local.analysed, len(local.failed)) == (8, 1)
    assert len(remote.nodes) == 2, remote.nodes  # both nodes analysed files
    assert sum(remote.nodes.values()) == 9
    assert remote.inference and "pytorch" in remote.inference
    here, there = tracks_by_path(local_dir), tracks_by_path(ray_dir)
    assert sorted(here) == sorted(there)
    local_probs, ray_probs = _genre_probabilities(local_dir), _genre_probabilities(ray_dir)
    for path, a in here.items():
        b = there[path]
        columns = ("status", "error", "genre", "n_segments", "content_hash", "size", "mtime_ns",
                   "title", "artist", "album", "track_number", "sample_rate", "channels",
                   "model_id", "heatmap_genre", "heatmap_start_s")  # fmt: skip
        assert {c: getattr(a, c) for c in columns} == {c: getattr(b, c) for c in columns}, path
        if a.status != "ok":
            continue
        va, vb = (np.frombuffer(t.embedding, dtype=np.float32) for t in (a, b))
        assert float(va @ vb) / float(np.linalg.norm(va) * np.linalg.norm(vb)) >= 0.999
        for genre in model.genres:
            assert ray_probs[(b.id, genre)] == pytest.approx(local_probs[(a.id, genre)], abs=1e-3)
        assert not Path(b.heatmap_path).is_absolute()  # stored relative: a portable data dir
        heatmap = ray_dir / b.heatmap_path
        assert heatmap.is_relative_to(ray_dir / "heatmaps") and heatmap.stat().st_size > 0
    assert there[str(library / "album0" / "track00.flac")].title == "First"
    assert_index_consistent(ray_dir)

    # the same incremental rules: nothing to do is decided here, before the cluster
    again = _on_ray([library], ray_dir, model, cluster.address)
    assert (again.analysed, again.skipped, again.nodes) == (0, 9, {})
    # a move is recognised by the content hash a node computed: no re-analysis
    moved = library / "album0" / "renamed.flac"
    shutil.move(library / "album1" / "track03.flac", moved)
    before = there[str(library / "album1" / "track03.flac")]
    after_move = _on_ray([library], ray_dir, model, cluster.address)
    assert (after_move.analysed, after_move.reused, after_move.missing) == (0, 1, 0)
    row = tracks_by_path(ray_dir)[str(moved)]
    assert (row.id, row.embedding) == (before.id, before.embedding)


def test_the_driver_sends_the_checkpoint_file_and_never_loads_the_network(
    cluster, tmp_path, model
):
    """A ``sonic ingest --ray`` driver spent 1.3 CPU-s importing torch and loading the
    network only to pickle it for the actors; it now sends the checkpoint's bytes and
    each actor loads them, checking they are the model the catalog planned with."""
    from embeddings.model_handle import DEFAULT_CHECKPOINT, LazyModel, ModelIdentity

    def refuse():
        raise AssertionError("the driver loaded the network")

    library = _library(tmp_path / "music", 3)
    lazy = LazyModel(ModelIdentity.of(model), refuse, checkpoint=DEFAULT_CHECKPOINT)
    local = run_ingest([library], tmp_path / "local", model)
    remote = _on_ray([library], tmp_path / "ray", lazy, cluster.address)
    assert (remote.analysed, remote.failed) == (local.analysed, local.failed) == (3, [])
    _assert_complete(tmp_path / "ray", library, 3)
    here, there = tracks_by_path(tmp_path / "local"), tracks_by_path(tmp_path / "ray")
    for path, a in here.items():
        va, vb = (np.frombuffer(t.embedding, dtype=np.float32) for t in (a, there[path]))
        assert float(va @ vb) / float(np.linalg.norm(va) * np.linalg.norm(vb)) >= 0.999
        assert (a.genre, a.model_id) == (there[path].genre, there[path].model_id)

    # the file is no longer the model the catalog remembered: the actors refuse it
    # rather than index with another network under this model's id
    other = ModelIdentity(
        "someone-elses-model", tuple(model.genres), model.embedding_dim, True
    )
    stale = LazyModel(other, refuse, checkpoint=DEFAULT_CHECKPOINT)
    with pytest.raises(DistributedIngestError, match="checkpoint changed") as failed:
        _on_ray([library], tmp_path / "stale", stale, cluster.address)
    # one line the user can read, not Ray's remote traceback
    assert "\n" not in str(failed.value) and 'File "' not in str(failed.value), failed.value
    assert _committed(tmp_path / "stale" / "catalog.db") == 0


def test_a_ray_run_of_an_untrained_checkpoint_warns_on_the_driver(cluster, tmp_path):
    """Only the actors load a shipped checkpoint; the untrained warning is the driver's."""
    from embeddings.checkpoint import save_checkpoint, untrained_model
    from embeddings.model_handle import LazyModel, ModelIdentity

    random = untrained_model()
    path = tmp_path / "random.pt"
    model_id = save_checkpoint(path, random.network, random.arch, random.genres,
                               random.frontend, trained=False)  # fmt: skip
    identity = ModelIdentity(model_id, tuple(random.genres), random.embedding_dim, False)
    notes = _Notes()
    lazy = LazyModel(identity, None, checkpoint=path)
    summary = _on_ray([_library(tmp_path / "music", 1)], tmp_path / "data", lazy,
                      cluster.address, notes)  # fmt: skip
    assert summary.analysed == 1
    assert [n for n in notes.notes if "UNTRAINED" in n], notes.notes


def test_asking_for_more_gpus_than_the_cluster_has_is_refused_clearly(cluster, tmp_path, model):
    library = _library(tmp_path / "music", 2)
    with pytest.raises(DistributedIngestError, match=r"--ray-gpus 2: the Ray cluster has 0 GPU"):
        _on_ray([library], tmp_path / "data", model, cluster.address, gpus=2)
    assert tracks_by_path(tmp_path / "data") == {}  # nothing half-done was recorded
    cli = subprocess.run(
        [sys.executable, "-m", "ui.cli", "ingest", str(library), "--data-dir",
         str(tmp_path / "cli"), "--ray-gpus", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode != 0 and "--ray-gpus needs --ray" in cli.stderr


def test_a_node_lost_mid_run_then_a_rerun_completes_the_catalog(cluster, tmp_path, model):
    count = 30
    library = _library(tmp_path / "music", count)
    data_dir = tmp_path / "data"
    extra = cluster.add_node(**NODE)
    cluster.wait_for_nodes()
    outcome: dict = {}

    def first_run() -> None:
        try:
            outcome["summary"] = _on_ray([library], data_dir, model, cluster.address,
                                         files_per_batch=1)  # fmt: skip
        except DistributedIngestError as exc:  # the cluster may give up on lost work
            outcome["error"] = exc

    thread = threading.Thread(target=first_run)
    thread.start()
    deadline = time.monotonic() + 300
    while _committed(data_dir / "catalog.db") < 3:
        assert thread.is_alive(), outcome
        assert time.monotonic() < deadline, "the Ray ingest made no progress"
        time.sleep(0.05)
    at_removal = _committed(data_dir / "catalog.db")
    cluster.remove_node(extra)
    thread.join(timeout=400)
    assert not thread.is_alive(), "the ingest did not end after its node was removed"
    assert at_removal < count, "the node should be lost mid-run"
    assert "summary" in outcome or "error" in outcome

    first = _committed(data_dir / "catalog.db")
    if "summary" in outcome:  # Ray redid the lost node's work on the nodes left
        assert outcome["summary"].analysed == first == count
    rerun = _on_ray([library], data_dir, model, cluster.address)
    assert rerun.analysed == count - first  # only what the first run did not commit
    _assert_complete(data_dir, library, count)


def _sonic(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ui.cli", *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


def test_a_sigkilled_driver_then_a_rerun_completes_the_catalog(cluster, tmp_path):
    count = 24
    library = _library(tmp_path / "music", count)
    data_dir = tmp_path / "data"
    command = ("ingest", str(library), "--data-dir", str(data_dir), "--ray", cluster.address)

    proc = _sonic(*command, "--no-progress")
    deadline = time.monotonic() + 300
    while _committed(data_dir / "catalog.db") < 3:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the Ray ingest made no progress"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver; its actors live in the cluster
    proc.wait()
    first = _committed(data_dir / "catalog.db")
    assert 3 <= first < count, "the kill should land mid-run"

    rerun = _sonic(*command, "--json")
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    assert f'"analysed": {count - first},' in out
    _assert_complete(data_dir, library, count)


def test_a_ray_driver_with_a_remembered_checkpoint_never_imports_torch(cluster, tmp_path):
    """The whole command: the second ``sonic ingest --ray`` of a catalog knows the
    checkpoint, so its driver plans, sends the file's bytes and commits without torch."""
    library = _library(tmp_path / "music", 2)
    command = ("ingest", str(library), "--data-dir", str(tmp_path / "data"), "--ray",
               cluster.address, "--no-progress", "--json")  # fmt: skip
    first = _sonic(*command)
    assert first.communicate(timeout=600)[0] and first.returncode == 0
    write(library / "album9" / "new.flac", chord([330, 440], 7.0, SR), SR)
    second = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ui.cli", *command],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr[-3000:]
    assert json.loads(second.stdout)["analysed"] == 1
    imported = {line.split("|")[-1].strip() for line in second.stderr.splitlines()
                if line.startswith("import time:")}  # fmt: skip
    assert "ingest.ray_actor" in imported  # the measure would see an import of torch
    assert "torch" not in imported


def _can_hide_a_folder() -> bool:
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    return probe.returncode == 0 and shutil.which("ray") is not None


@pytest.mark.skipif(
    not _can_hide_a_folder(), reason="needs unshare(1) with mount namespaces (root) and `ray`"
)
def test_a_node_without_the_shared_mount_fails_its_files_clearly_and_a_rerun_retries_them(
    cluster, tmp_path, model
):
    """A real third node whose view of the file system lacks the library (a missing mount)."""
    count = 9
    library = _library(tmp_path / "music", count)
    data_dir = tmp_path / "data"
    alive_before = sum(n["Alive"] for n in ray.nodes())
    blind = subprocess.Popen(
        ["unshare", "--mount", "sh", "-c",
         f"mount -t tmpfs none '{library}' && exec '{shutil.which('ray')}' start "
         f"--address {cluster.address} --num-cpus 1 --object-store-memory {150 * 2**20} "
         "--block --disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while sum(n["Alive"] for n in ray.nodes()) <= alive_before:
            assert blind.poll() is None, "the third node did not start"
            assert time.monotonic() < deadline, "the third node did not join"
            time.sleep(0.5)
        summary = _on_ray([library], data_dir, model, cluster.address, files_per_batch=1)
    finally:
        os.killpg(blind.pid, signal.SIGTERM)
        try:
            blind.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(blind.pid, signal.SIGKILL)
            blind.wait()

    # Ray's scheduler decides how the files spread over the three nodes; what matters is
    # that the blind node got some, and that each of those failed clearly (below).
    assert summary.failed, "the node without the library should have been given files"
    assert summary.analysed + len(summary.failed) == count
    blind_nodes = set()
    for path, reason in summary.failed:
        assert "cannot read this file" in reason and "shared mount" in reason, reason
        blind_nodes.add(reason.split("node ", 1)[1].split(") cannot", 1)[0])
        assert tracks_by_path(data_dir)[path].error == reason  # recorded, with its reason
    assert len(blind_nodes) == 1  # one node, named in every reason
    (blind,) = blind_nodes  # the reason's node name, without its closing parenthesis
    assert any(name.startswith(blind) for name in summary.nodes), (blind, summary.nodes)

    # the files were never read: the next run (the mount fixed) analyses them
    rerun = _on_ray([library], data_dir, model, cluster.address)
    assert (rerun.analysed, rerun.failed) == (len(summary.failed), [])
    _assert_complete(data_dir, library, count)


def test_a_ray_ingest_and_a_local_one_on_one_postgresql_catalog_analyse_each_file_once(
    cluster, tmp_path, model, postgres_server, monkeypatch
):
    """The Ray driver claims its files as a local run does (``catalog.claims``).

    A local ``sonic ingest`` is mid-run, holding the claims of the files its decoder
    has, when a Ray ingest of the same library on the same PostgreSQL catalog runs.
    To make the overlap certain the local run is stopped (SIGSTOP, between two
    commits) while the Ray ingest runs whole: its claims stay held, since its
    connection stays open. The Ray run must leave those files to it, and the local
    run, continued, must leave the Ray run's files alone: every file once.
    """
    from sqlalchemy import create_engine, func, text

    from catalog.schema import Segment, Track

    url = postgres_server.new_database("rayshare")
    monkeypatch.setenv("SONIC_DATABASE_URL", url)
    count = 12
    library = _library(tmp_path / "music", count)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")

    def committed() -> int:
        try:
            with engine.connect() as conn:
                query = select(func.count()).select_from(Track).where(Track.status == "ok")
                return conn.execute(query).scalar_one()
        except Exception:  # the schema is not there yet
            return 0

    def mid_transaction() -> int:
        """Other sessions inside a transaction (the local run committing a track)."""
        busy = text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')"
        )
        with engine.connect() as conn:
            return conn.execute(busy).scalar_one()

    local = _sonic(
        "ingest", str(library), "--data-dir", str(tmp_path / "local"), "--workers", "1",
        "--inference-threads", "1", "--no-heatmaps", "--no-progress", "--json",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while committed() < 1:  # the local run is under way and holds claims
            assert local.poll() is None, local.communicate()
            assert time.monotonic() < deadline, "the local ingest made no progress"
            time.sleep(0.05)
        while True:  # stopped between commits, so it holds no lock a commit would wait on
            os.killpg(local.pid, signal.SIGSTOP)
            if not mid_transaction():
                break
            os.killpg(local.pid, signal.SIGCONT)
            time.sleep(0.1)
        assert committed() < count, "the local run finished before the Ray run could start"
        remote = _on_ray([library], tmp_path / "ray", model, cluster.address, files_per_batch=1)
        os.killpg(local.pid, signal.SIGCONT)
        out, err = local.communicate(timeout=600)
    finally:
        if local.poll() is None:
            os.killpg(local.pid, signal.SIGCONT)
            local.kill()
            local.wait()
    assert local.returncode == 0, err
    here = json.loads(out)

    # each file handled by one run only (analysed, or failed by a node), none twice
    handled = remote.analysed + len(remote.failed) + here["analysed"] + len(here["failed"])
    assert handled == count, (remote, here)
    assert remote.claimed_elsewhere > 0, "the local run's claims were not seen"
    assert not remote.failed and not here["failed"], (remote.failed, here["failed"])
    assert remote.analysed > 0 and here["analysed"] > 0, "the two runs should split the work"
    with engine.connect() as conn:
        rows = conn.execute(select(Track.id, Track.path, Track.status, Track.n_segments)).all()
        segments = dict(
            conn.execute(select(Segment.track_id, func.count()).group_by(Segment.track_id)).all()
        )
    engine.dispose()
    assert len(rows) == count and len({r.path for r in rows}) == count
    assert {r.status for r in rows} == {"ok"}
    assert all(segments[r.id] == r.n_segments for r in rows)
    with Catalog(tmp_path / "ray") as catalog:  # the Ray driver's index caught up as well
        assert set(catalog.index().ids().tolist()) == {r.id for r in rows}


def _in_thread(run, timeout: float = 900) -> dict:
    """``run()`` on a thread, given ``timeout`` s: {"summary": ...} or {"error": ...}."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["summary"] = run()
        except Exception as exc:  # noqa: BLE001 (reported by the caller)
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=timeout)  # an actor's start-up takes minutes on a loaded 2-core box
    assert not thread.is_alive(), "an actor was never scheduled"
    return outcome


def test_ray_gpus_runs_on_the_gpu_node_and_falls_back_to_the_cpu_without_cuda(
    cluster, tmp_path, model
):
    """``--ray-gpus 1`` on a cluster whose third node declares one (logical) GPU.

    With ``--no-ray-cpu-actors`` the GPU actor must be placed on that node, and only
    there (the CPU nodes get no files); the node has no CUDA, so the actor says so and
    analyses on the CPU, with the results of a CPU run. The GPU node has one CPU: a
    GPU actor asking for more CPUs than its node has would never start. Then the
    default, a mixed run: the GPU actor on that node and a CPU actor on each of the
    two CPUs it does not hold, both pools analysing files, each file once.
    """
    count = 8
    library = _library(tmp_path / "music", count)
    local = run_ingest([library], tmp_path / "local", model)
    gpu_node = cluster.add_node(**NODE, num_gpus=1)
    cluster.wait_for_nodes()
    notes, mixed_notes = _Notes(), _Notes()
    try:
        outcome = _in_thread(lambda: _on_ray(
            [library], tmp_path / "gpu", model, cluster.address, notes, gpus=1,
            cpu_actors=False,
        ))  # fmt: skip
        mixed = _in_thread(lambda: _on_ray(
            [library], tmp_path / "mixed", model, cluster.address, mixed_notes, gpus=1,
            files_per_batch=1,
        ))  # fmt: skip
    finally:
        cluster.remove_node(gpu_node)
    assert "summary" in outcome, outcome
    summary = outcome["summary"]
    assert summary.analysed == local.analysed == count and not summary.failed
    (node,) = summary.nodes  # one node analysed everything: the one with the GPU
    assert f"node {gpu_node.node_id[:8]})" in node, (node, gpu_node.node_id)
    assert summary.ray_actors == {"gpu": count}
    (note,) = notes.notes
    assert "CUDA is not usable" in note and "analyses on the CPU" in note and node in note
    assert " on cuda" not in summary.inference  # the network ran on the CPU

    assert "summary" in mixed, mixed
    both = mixed["summary"]
    assert both.analysed == count and not both.failed
    # both pools analysed files, each file once, the GPU pool's on the GPU node only
    assert set(both.ray_actors) == {"gpu", "cpu"} and sum(both.ray_actors.values()) == count
    assert both.nodes.get(node, 0) == both.ray_actors["gpu"], (both.nodes, both.ray_actors)
    assert sum(both.nodes.values()) == count and len(both.nodes) >= 2, both.nodes
    _assert_complete(tmp_path / "mixed", library, count)

    here = tracks_by_path(tmp_path / "local")
    local_probs = _genre_probabilities(tmp_path / "local")
    for data_dir in (tmp_path / "gpu", tmp_path / "mixed"):
        _assert_like_local(here, local_probs, data_dir, model)


def _assert_like_local(here: dict, local_probs: dict, data_dir: Path, model) -> None:
    """The rows, embeddings (cosine >= 0.999) and genres of a local run of the same files."""
    there = tracks_by_path(data_dir)
    assert sorted(here) == sorted(there)
    gpu_probs = _genre_probabilities(data_dir)
    for path, a in here.items():
        b = there[path]
        assert (a.genre, a.n_segments, a.content_hash) == (b.genre, b.n_segments, b.content_hash)
        va, vb = (np.frombuffer(t.embedding, dtype=np.float32) for t in (a, b))
        assert float(va @ vb) / float(np.linalg.norm(va) * np.linalg.norm(vb)) >= 0.999
        for genre in model.genres:
            assert gpu_probs[(b.id, genre)] == pytest.approx(local_probs[(a.id, genre)], abs=1e-3)


def test_gpu_actors_ask_for_no_more_cpus_than_a_gpu_node_has():
    """The CPUs each GPU actor holds follow the GPU nodes' CPUs per GPU (capped at 4)."""
    from ingest.distributed import GPU_ACTOR_DECODERS, _cpus_beside_each_gpu

    def node(cpus: float, gpus: float, alive: bool = True) -> dict:
        return {"Alive": alive, "Resources": {"CPU": cpus, "GPU": gpus} if gpus else {"CPU": cpus}}

    assert _cpus_beside_each_gpu([node(16, 0), node(32, 2)]) == GPU_ACTOR_DECODERS
    assert _cpus_beside_each_gpu([node(16, 0), node(8, 4), node(64, 1)]) == 2
    assert _cpus_beside_each_gpu([node(1, 1), node(2, 0)]) == 1
    assert _cpus_beside_each_gpu([node(0.5, 1, alive=False), node(12, 2)]) == 4


def test_cpu_actors_hold_a_whole_node_and_bigger_nodes_run_several():
    """One actor per node pays the actor start-up once per node, not once per CPU."""
    from ingest.distributed import _cpu_actor_shape

    def node(cpus: float, alive: bool = True) -> dict:
        return {"Alive": alive, "Resources": {"CPU": cpus}}

    assert _cpu_actor_shape([node(2)]) == (2, 1)  # one node: one actor with both CPUs
    assert _cpu_actor_shape([node(1), node(1), node(1)]) == (1, 3)
    assert _cpu_actor_shape([node(4), node(8), node(9)]) == (4, 1 + 2 + 2)
    assert _cpu_actor_shape([node(16, alive=False), node(0.5), node(6)]) == (6, 1)
    assert _cpu_actor_shape([]) == (1, 1)


def test_a_failed_join_names_token_authentication_only_where_it_may_be_the_cause(tmp_path):
    """Ray 2.60 heads turn token auth on when ~/.ray/auth_token exists; a client without
    RAY_AUTH_MODE=token then fails with only "Failed to connect" (seen on this machine)."""
    from ingest.distributed import _join_hint

    assert _join_hint({}, tmp_path) == ""  # no token anywhere: not the cause
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("0" * 64)
    hint = _join_hint({}, tmp_path)
    assert "RAY_AUTH_MODE=token" in hint and "auth_token" in hint
    assert _join_hint({"RAY_AUTH_MODE": "token"}, tmp_path) == ""  # already asked for
    assert "RAY_AUTH_MODE=token" in _join_hint({"RAY_AUTH_TOKEN": "x"}, tmp_path / "none")


def test_actor_calls_are_large_but_every_actor_gets_two_on_a_short_run():
    """A call ends with an actor's cores draining (large calls: fewer drains), and the
    run ends with the slowest actor's last call (every actor gets work, two calls each)."""
    from ingest.distributed import _files_per_call

    assert _files_per_call(10_000, actors=3, most=16) == 16  # a library: the largest call
    assert _files_per_call(48, actors=1, most=32) == 24  # 1 actor, 2 calls
    assert _files_per_call(48, actors=2, most=16) == 12  # not 16, 16, 16 for two actors
    assert _files_per_call(48, actors=3, most=16) == 8
    assert _files_per_call(3, actors=4, most=16) == 1
    assert _files_per_call(0, actors=0, most=0) == 1  # never zero: a dataset needs blocks


def test_the_lean_head_settings_start_a_cluster_that_runs_an_ingest(tmp_path, model):
    """What docs/scaling.md recommends for `ray start` is accepted by this Ray and works.

    A config key Ray does not know stops the GCS at start-up (it did for
    ``enable_task_events``), so the lean settings are started for real here, on a
    cluster of their own, with one two-CPU node: the one-actor-per-node shape.
    """
    from ingest.ray_settings import RAY_START_HEAD, lean_env, lean_node_args

    assert "--include-dashboard=false" in RAY_START_HEAD and "--system-config=" in RAY_START_HEAD
    saved = dict(os.environ)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), saved.get("PYTHONPATH")) if p)
    os.environ.update(lean_env())
    # the module's cluster, when an earlier test connected to it: this test needs its own
    module_cluster = ray.get_runtime_context().gcs_address if ray.is_initialized() else None
    ray.shutdown()
    lean = Cluster(
        initialize_head=True,
        head_node_args=lean_node_args({"num_cpus": 2, "object_store_memory": 150 * 2**20}),
    )
    try:
        lean.wait_for_nodes()
        ray.init(address=lean.address, log_to_driver=False)
        library = _library(tmp_path / "music", 3)
        summary = _on_ray([library], tmp_path / "data", model, lean.address)
        assert (summary.analysed, summary.failed, len(summary.nodes)) == (3, [], 1)
        _assert_complete(tmp_path / "data", library, 3)
    finally:
        ray.shutdown()
        lean.shutdown()
        os.environ.clear()
        os.environ.update(saved)
        if module_cluster:
            ray.init(address=module_cluster, log_to_driver=False)


def test_mixed_pools_take_the_cpus_the_gpu_actors_leave_and_share_files_first_come():
    """The pools a ``--ray-gpus`` run makes, and how the Dispenser gives each file to one."""
    from ingest.distributed import actor_pools
    from ingest.ray_actor import Dispenser

    def node(cpus: float, gpus: float = 0) -> dict:
        return {"Alive": True, "Resources": {"CPU": cpus, "GPU": gpus}}

    nodes = [node(8), node(8, 1), node(2)]  # 4 CPUs beside the GPU; 14 left for CPU actors
    resources = {"CPU": 18.0, "GPU": 1.0}
    gpu, cpu = actor_pools(IngestOptions(), RayOptions(gpus=1), resources, nodes)
    assert (gpu.kind, gpu.size, gpu.num_cpus, gpu.num_gpus) == ("gpu", 1, 4.0, 1.0)
    assert gpu.options.workers == 4 and gpu.options.device == "cuda"
    assert (cpu.kind, cpu.size, cpu.num_cpus, cpu.num_gpus) == ("cpu", 14, 1.0, 0.0)
    assert cpu.options.device == "cpu" and cpu.options.workers == 1
    (alone,) = actor_pools(IngestOptions(), RayOptions(gpus=1, cpu_actors=False), resources, nodes)
    assert alone.kind == "gpu"
    # a GPU node with its CPUs all held: no CPU pool
    (only,) = actor_pools(IngestOptions(), RayOptions(gpus=1), {"CPU": 1.0, "GPU": 1.0},
                          [node(1, 1)])  # fmt: skip
    assert only.kind == "gpu"
    # without GPUs: one actor per node holding its CPUs
    (plain,) = actor_pools(IngestOptions(), RayOptions(), {"CPU": 4.0}, [node(2), node(2)])
    assert (plain.size, plain.num_cpus, plain.options.workers) == (2, 2.0, 2)

    dispenser = Dispenser()
    assert dispenser.claim("gpu", [0, 1, 2]) == [0, 1, 2]
    assert dispenser.claim("cpu", [5, 4, 3, 2]) == [5, 4, 3]  # 2 is the GPU pool's
    assert dispenser.claim("gpu", [2, 3]) == [2]  # a batch run again: the same files
    assert dispenser.counts() == {"gpu": 3, "cpu": 3}
