"""Hostile files (issue 28): no single file ends an ingest run, hangs it or blows its memory.

Every file here is real and written in a temporary folder (headers by hand with
``struct`` where soundfile refuses), and every run is a real ingest with the
shipped model: whatever a file does, it becomes that file's failure or warning
with a reason a person can read, and the good file beside it is still indexed.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from service_fixtures import free_port
from sqlalchemy import select

from audio_fixtures import chord, tone, write, write_float_wav, write_m4a, write_raw_wav
from catalog.schema import TrackGenre
from catalog.store import Catalog
from embeddings.audio import (
    DecodeError,
    audio_info,
    decode_all,
    open_audio,
    open_pyav_audio,
    read_audio,
)
from helpers import assert_index_consistent, run_ingest, tracks_by_path
from ingest.clip import ClipAnalyser, ClipError
from ingest.hashing import content_hash
from ingest.pipeline import IngestOptions, ProgressSink, ingest
from ingest.worker import file_facts

SR = 22050
REPO = Path(__file__).resolve().parents[1]


def _good(root: Path) -> Path:
    return write(root / "good.flac", chord([261.6, 329.6, 392.0], 4, SR), SR)


def _stored_probabilities(data_dir: Path) -> list[float]:
    with Catalog(data_dir) as catalog, catalog.sessions() as s:
        return [g.probability for g in s.scalars(select(TrackGenre))]


# -- 1. NaN, infinity and 1e30 samples -------------------------------------------------------


def _nonfinite_library(root: Path) -> dict[str, Path]:
    base = tone(440, 4, SR)
    nan = base.copy()
    nan[::100] = np.nan  # 882 samples
    inf = base.copy()
    inf[::97] = np.inf
    inf[50::97] = -np.inf
    huge = base.copy()
    huge[::1000] = 1e30  # 89 samples: float32 squares of these overflow
    base44 = tone(440, 4, 44100)
    nan44 = base44.copy()
    nan44[1000:1010] = np.nan  # through the resampler, which would smear it
    return {
        "nan": write_float_wav(root / "nan.wav", nan, SR),
        "inf": write_float_wav(root / "inf.wav", inf, SR),
        "huge": write_float_wav(root / "huge.wav", huge, SR),
        "nan44": write_float_wav(root / "nan44.wav", nan44, 44100),
        "all_nan": write_float_wav(root / "all_nan.wav", np.full(4 * SR, np.nan), SR),
        "good": _good(root),
    }


def test_non_finite_samples_are_cleaned_with_a_warning_and_the_run_goes_on(tmp_path, model):
    files = _nonfinite_library(tmp_path / "music")
    data_dir = tmp_path / "data"
    summary = run_ingest([tmp_path / "music"], data_dir, model)
    tracks = {name: tracks_by_path(data_dir)[str(path)] for name, path in files.items()}

    assert summary.analysed == 5
    assert summary.failed == [
        (str(files["all_nan"]), "no finite audio samples (every sample is NaN or infinite)")
    ]
    for name in ("nan", "inf", "huge", "nan44", "good"):
        assert tracks[name].status == "ok", (name, tracks[name].error)
        assert np.isfinite(tracks[name].confidence), name
    assert "replaced 882 non-finite samples" in tracks["nan"].warning
    assert "replaced 10 non-finite samples" in tracks["nan44"].warning
    inf_count = len(range(0, 4 * SR, 97)) + len(range(50, 4 * SR, 97))
    assert f"replaced {inf_count:,} non-finite samples" in tracks["inf"].warning  # not "silent"
    assert "clipped 89 samples" in tracks["huge"].warning
    assert tracks["good"].warning is None
    assert all(np.isfinite(p) for p in _stored_probabilities(data_dir))
    assert_index_consistent(data_dir)


def test_a_model_giving_nan_fails_the_track_not_the_run(tmp_path, model):
    """Defence in depth: non-finite network output never reaches SQLite or FAISS."""
    good = _good(tmp_path / "music")
    network = copy.deepcopy(model.network)
    head = [m for m in network.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.bias.fill_(float("nan"))
    poisoned = dataclasses.replace(model, network=network, model_id="poisoned-nan")
    data_dir = tmp_path / "data"

    summary = run_ingest([good.parent], data_dir, poisoned, heatmaps=False)

    assert summary.analysed == 0
    assert len(summary.failed) == 1
    assert summary.failed[0][1].startswith("the model produced non-finite output")
    assert tracks_by_path(data_dir)[str(good)].status == "failed"
    assert _stored_probabilities(data_dir) == []


def test_uploads_and_training_reads_get_the_same_cleaning(tmp_path, model):
    files = _nonfinite_library(tmp_path / "music")
    analyser = ClipAnalyser(model, device="cpu")
    for name in ("nan", "inf", "huge", "nan44"):
        clip = analyser.analyse_file(files[name])
        assert np.isfinite(clip.probabilities).all() and np.isfinite(clip.embedding).all(), name
        audio, _ = read_audio(files[name], SR)
        assert np.isfinite(audio).all() and np.abs(audio).max() <= 1_000, name
    with pytest.raises(ClipError, match="no finite audio samples"):
        analyser.analyse_file(files["all_nan"])
    with pytest.raises(DecodeError, match="no finite audio samples"):
        read_audio(files["all_nan"], SR)


# -- 2. Headers declaring impossible rates or channel counts ---------------------------------

RATE_REASON = "declares a sample rate of {rate} Hz; only 4,000–384,000 Hz are read"


def _pcm(seconds: float = 2.0, channels: int = 1) -> bytes:
    samples = (tone(440, seconds) * 32767).astype("<i2")
    return np.repeat(samples[:, None], channels, axis=1).tobytes()


def _impossible_headers(root: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the reason it must fail with)."""
    return {
        "1hz": (write_raw_wav(root / "1hz.wav", _pcm(), 1, 1), RATE_REASON.format(rate="1")),
        "1mhz": (
            write_raw_wav(root / "1mhz.wav", _pcm(), 1_000_000, 1),
            RATE_REASON.format(rate="1,000,000"),
        ),
        "64ch": (
            write_raw_wav(root / "64ch.wav", _pcm(0.5, 64), SR, 64),
            "declares 64 channels; at most 32 are read",
        ),
    }


def test_impossible_headers_are_refused_before_anything_is_allocated(tmp_path, model):
    hostile = _impossible_headers(tmp_path / "music")
    good = _good(tmp_path / "music")
    data_dir = tmp_path / "data"

    summary = run_ingest([tmp_path / "music"], data_dir, model)

    assert summary.analysed == 1
    tracks = tracks_by_path(data_dir)
    assert tracks[str(good)].status == "ok"
    failed = dict(summary.failed)
    for name, (path, reason) in hostile.items():
        assert reason in failed[str(path)], name
        assert tracks[str(path)].status == "failed" and reason in tracks[str(path)].error
    # Every other open path says the same: training reads, headers, uploads, FFmpeg.
    for path, reason in hostile.values():
        for read in (
            audio_info,
            lambda p: read_audio(p, SR),
            lambda p: open_audio(p, SR),
            lambda p: decode_all(p, SR, max_seconds=10),
            open_pyav_audio,
        ):
            with pytest.raises(DecodeError, match=reason):
                read(path)


def _peak_rss_bytes(pid: int) -> int:
    """The process's high-water resident set (VmHWM), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_1_hz_upload_is_refused_by_a_running_server_in_small_memory(tmp_path, model):
    """``sonic serve`` grew to 9 GB and died on this upload; now a 422 and nothing grows."""
    good = _good(tmp_path / "music")
    data_dir = tmp_path / "data"
    run_ingest([good.parent], data_dir, model, heatmaps=False)
    one_hz = write_raw_wav(tmp_path / "1hz.wav", _pcm(), 1, 1)
    port = free_port()
    env = {**os.environ, "SONIC_DATA_DIR": str(data_dir)}
    env.pop("SONIC_API_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.cli", "serve", "--port", str(port), "--json"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        json.loads(proc.stdout.readline())
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{base}/health", timeout=5).raise_for_status()
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        with httpx.Client(base_url=base, timeout=120) as client:
            warm = client.post("/similar", files={"file": ("good.flac", good.read_bytes())})
            assert warm.status_code == 200, warm.text[:500]  # analysis code paths are loaded now
            before = _peak_rss_bytes(proc.pid)
            response = client.post("/similar", files={"file": ("1hz.wav", one_hz.read_bytes())})
            assert response.status_code == 422, response.text[:500]
            assert RATE_REASON.format(rate="1") in response.json()["detail"]
            assert client.get("/health").status_code == 200
            grown = _peak_rss_bytes(proc.pid) - before
        assert grown < 200 * 2**20, f"peak RSS grew by {grown / 2**20:.0f} MiB"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- 3. Fifos, devices, dangling and looping links, unreadable folders ------------------------


def _run_bounded(roots, data_dir: Path, model, seconds: float = 180, **options):
    """run_ingest in a thread, so a hang fails the test instead of blocking the suite."""
    result: dict = {}

    def target() -> None:
        try:
            result["summary"] = run_ingest(roots, data_dir, model, **options)
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the ingest run did not finish within {seconds:.0f} s"
    if "error" in result:
        raise result["error"]
    return result["summary"]


def test_special_files_and_bad_links_are_recorded_once_and_never_opened(tmp_path, model):
    root = tmp_path / "music"
    good = _good(root)
    fifo = root / "stuck.wav"
    os.mkfifo(fifo)
    zero = root / "zero.flac"
    zero.symlink_to("/dev/zero")
    dangling = root / "gone.mp3"
    dangling.symlink_to(root / "nowhere.mp3")
    loop_a, loop_b = root / "loop_a.wav", root / "loop_b.wav"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    expected = {
        fifo: "not a regular file: fifo",
        zero: "not a regular file: character device",
        dangling: "broken symbolic link",
        loop_a: "symbolic link loop",
        loop_b: "symbolic link loop",
    }
    data_dir = tmp_path / "data"

    summary = _run_bounded([root], data_dir, model)

    assert summary.analysed == 1 and tracks_by_path(data_dir)[str(good)].status == "ok"
    failed = dict(summary.failed)
    tracks = tracks_by_path(data_dir)
    for path, reason in expected.items():
        assert failed[str(path)].startswith(reason), (path, failed.get(str(path)))
        assert tracks[str(path)].status == "failed", path  # visible to `sonic status`
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # nobody wrote to or replaced it

    again = _run_bounded([root], data_dir, model)  # recorded once: not retried every run
    assert (again.analysed, again.failed, again.skipped) == (0, [], 6)


def _too_deep_folder(parent: Path) -> Path:
    """A folder whose absolute path is longer than PATH_MAX: nothing can list it by name."""
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    path = parent
    try:
        while len(str(path)) <= os.pathconf("/", "PC_PATH_MAX"):
            name = "d" * 200
            os.mkdir(name, dir_fd=fd)
            next_fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd, path = next_fd, path / name
    finally:
        os.close(fd)
    return path


class _Notes(ProgressSink):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)


def test_the_cli_summary_names_a_folder_it_could_not_read(tmp_path):
    from typer.testing import CliRunner

    from ui.cli import app

    root = tmp_path / "music"
    _good(root)
    (root / "deep").mkdir()
    _too_deep_folder(root / "deep")
    result = CliRunner().invoke(
        app, ["ingest", str(root), "--data-dir", str(tmp_path / "data"), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "folder not read:" in result.stdout and "File name too long" in result.stdout


def test_a_folder_that_cannot_be_listed_is_reported_not_skipped_in_silence(tmp_path, model):
    root = tmp_path / "music"
    good = _good(root)
    (root / "deep").mkdir()
    _too_deep_folder(root / "deep")
    progress = _Notes()

    with Catalog(tmp_path / "data") as catalog:
        summary = ingest([root], catalog, model, IngestOptions(workers=2), progress)

    assert summary.analysed == 1 and summary.failed == []
    assert tracks_by_path(tmp_path / "data")[str(good)].status == "ok"
    assert len(summary.unreadable_folders) == 1
    folder, reason = summary.unreadable_folders[0]
    assert (
        folder.startswith(str(root / "deep")) and reason == "cannot read folder: File name too long"
    )
    assert summary.to_dict()["unreadable_folders"] == [{"path": folder, "reason": reason}]
    assert any(folder in note and reason in note for note in progress.notes), progress.notes


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 folder regardless")
def test_a_folder_without_permission_is_reported_and_its_tracks_not_marked_missing(tmp_path, model):
    root = tmp_path / "music"
    _good(root)
    hidden = write(root / "private" / "song.flac", tone(330, 4, SR), SR)
    data_dir = tmp_path / "data"
    run_ingest([root], data_dir, model)
    (root / "private").chmod(0)
    try:
        summary = run_ingest([root], data_dir, model)
    finally:
        (root / "private").chmod(0o755)
    assert summary.unreadable_folders == [
        (str(root / "private"), "cannot read folder: Permission denied")
    ]
    assert summary.missing == 0 and tracks_by_path(data_dir)[str(hidden)].status == "ok"


# -- 5. Workers die with their parent ----------------------------------------------------------

_DRIVER = """
import sys, warnings
sys.path.insert(0, sys.argv[3])
from embeddings.checkpoint import load_model
from helpers import run_ingest
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model = load_model()
# every sample (no analysis budget), so the workers are still decoding when the kill comes
run_ingest([sys.argv[1]], sys.argv[2], model, heatmaps=False, analysis_seconds=None)
"""


def _decode_workers(pid: int) -> list[int]:
    """The multiprocessing children of ``pid`` (the decode workers), from /proc."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    workers = []
    for child in children:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            workers.append(child)
    return workers


def _alive(pid: int) -> bool:
    """True unless ``pid`` is gone or a zombie (dead, waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_decode_workers_die_when_the_main_process_is_killed(tmp_path):
    """SIGKILL to the main process alone, as the OOM killer sends it, takes its workers too."""
    root = tmp_path / "music"
    for i in range(4):
        write(root / f"long{i}.wav", tone(220 + 110 * i, 5 * 60, SR, amp=0.2), SR)
    tests = Path(__file__).resolve().parent
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, str(root), str(tmp_path / "data"), str(tests)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2:
            assert driver.poll() is None, driver.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the decode workers never started"
            time.sleep(0.1)
            workers = _decode_workers(driver.pid)
        time.sleep(2.0)  # into the files: workers are decoding
        assert all(_alive(w) for w in workers) and driver.poll() is None
        os.kill(driver.pid, signal.SIGKILL)  # the main process only
        driver.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [w for w in workers if _alive(w)] == [], "decode workers outlived their parent"
    finally:
        if driver.poll() is None:
            driver.kill()
        for worker in workers:  # only on failure: leave nothing running behind the test
            if _alive(worker):
                os.kill(worker, signal.SIGKILL)


# -- 4. A per-file no-progress budget ---------------------------------------------------------


def _holding_open(path: Path) -> int | None:
    """The decode worker (a child of this process) that has ``path`` open, if any."""
    for worker in _decode_workers(os.getpid()):
        try:
            fds = list(Path(f"/proc/{worker}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == str(path):
                    return worker
            except OSError:
                continue
    return None


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs Linux /proc")
def test_a_hung_worker_is_stopped_and_its_file_failed_and_the_run_goes_on(tmp_path, model):
    """A worker that makes no progress (SIGSTOP: as stuck as a decoder can be) is replaced."""
    root = tmp_path / "music"
    big = root / "a_big.wav"  # sorted first: the one worker takes it before the good file
    root.mkdir()
    with open(big, "wb") as fh:
        fh.truncate(6 << 30)  # sparse: hashing it takes seconds but costs no disk
    good = write(root / "b_good.flac", chord([261.6, 329.6, 392.0], 4, SR), SR)
    data_dir = tmp_path / "data"
    result: dict = {}

    def run() -> None:
        with Catalog(data_dir) as catalog:
            options = IngestOptions(workers=1, heatmaps=False, stall_seconds=3)
            result["summary"] = ingest([root], catalog, model, options)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    stopped = None
    try:
        deadline = time.monotonic() + 120
        while stopped is None:  # it is hashing the big file: freeze it there
            assert thread.is_alive() and time.monotonic() < deadline, "never saw the file open"
            worker = _holding_open(big)
            time.sleep(0.2)
            if worker is not None and _holding_open(big) == worker:
                os.kill(worker, signal.SIGSTOP)
                stopped = worker
        thread.join(120)
        assert not thread.is_alive(), "the run waited for the hung worker"
        summary = result["summary"]
        assert summary.analysed == 1 and tracks_by_path(data_dir)[str(good)].status == "ok"
        assert summary.failed == [
            (
                str(big),
                "reading or decoding made no progress for 3 s; the decoder was stopped "
                "(a hung decoder or an unresponsive disk)",
            )
        ]
        assert tracks_by_path(data_dir)[str(big)].status == "failed"
        assert not _alive(stopped)
    finally:
        if stopped is not None and _alive(stopped):
            os.kill(stopped, signal.SIGKILL)


def test_the_workers_hash_is_the_catalogs(tmp_path):
    path = write(tmp_path / "x.flac", tone(440, 3, SR), SR)
    assert file_facts(path).content_hash == content_hash(path)


# -- 6. Damaged M4A; files shorter than one segment ------------------------------------------


def test_an_m4a_with_a_damaged_sample_description_fails_with_a_reason(tmp_path, model):
    """FFmpeg opens it but knows no codec for it: a reason, not an AttributeError."""
    root = tmp_path / "music"
    good = _good(root)
    intact = write_m4a(tmp_path / "intact.m4a", chord([200, 1200], 4, 44100), 44100)
    damaged = root / "damaged.m4a"
    damaged.write_bytes(intact.read_bytes().replace(b"stsd", b"xxxx", 1))  # in the moov atom
    data_dir = tmp_path / "data"

    summary = run_ingest([root], data_dir, model)

    assert summary.analysed == 1 and tracks_by_path(data_dir)[str(good)].status == "ok"
    [(path, reason)] = summary.failed
    assert path == str(damaged)
    assert "analysis error" not in reason and "NoneType" not in reason
    assert "the audio stream's codec is unknown or its header is damaged" in reason


def test_files_shorter_than_a_segment_are_indexed_with_a_warning_saying_so(tmp_path, model):
    root = tmp_path / "music"
    good = _good(root)
    sound = tone(440, 1, SR, amp=0.5)
    short = {
        "only 1 sample of audio": write(root / "one.wav", sound[5:6], SR),
        "only 30 samples of audio": write(root / "thirty.wav", sound[:30], SR),
        "only 0.2 s of audio": write(root / "fifth.wav", sound[: SR // 5], SR),
    }
    data_dir = tmp_path / "data"

    summary = run_ingest([root], data_dir, model)

    assert summary.analysed == 4 and summary.failed == []
    tracks = tracks_by_path(data_dir)
    for words, path in short.items():
        track = tracks[str(path)]
        assert track.status == "ok" and track.genre is not None, path
        assert track.warning.startswith(words), track.warning
        assert "the genre is a guess from one segment padded with silence" in track.warning
    assert tracks[str(good)].warning is None
