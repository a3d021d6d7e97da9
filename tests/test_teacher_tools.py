"""The teacher-cache commands of tools/ run as tools/README.md writes them, and
``sonic pretrain --teacher-cache`` reads what they write (embeddings/training/teacher.py).

The musicnn extraction itself needs its own TensorFlow environment and is not run
here; its ``--score`` runs on the project's Python (numpy only), on a cache in its
layout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audio_fixtures import noise, tone, write
from embeddings.training.teacher import TeacherCache

REPO = Path(__file__).resolve().parents[1]
SR = 22050


def _tool(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def albums(tmp_path_factory) -> Path:
    """Two albums of six 7-s tracks (two whole 3-s windows each): p@5 can reach 1."""
    root = tmp_path_factory.mktemp("albums")
    for album, freq in (("low", 220.0), ("high", 1760.0)):
        for i in range(6):
            audio = tone(freq * (1 + 0.01 * i), 7.0, SR) + noise(7.0, SR, seed=i, amp=0.02)
            write(root / album / f"{i}.wav", audio.astype(np.float32), SR)
    return root


def test_handcrafted_teacher_writes_a_cache_pretrain_reads_and_resumes(albums, tmp_path):
    cache = tmp_path / "handcrafted"
    done = _tool("tools/teacher_handcrafted.py", albums, "--cache", cache, "--workers", "1")
    assert done.returncode == 0, done.stderr
    index = json.loads((cache / "index.json").read_text())
    assert len(index) == 12
    teacher = TeacherCache(cache, "spectral")
    vectors, hop, window = teacher.load(albums / "low" / "0.wav")
    assert vectors.shape == (2, 66) and hop == window == 3.0
    assert not list(cache.glob(".*.tmp"))  # written atomically: no temporary left
    again = _tool("tools/teacher_handcrafted.py", albums, "--cache", cache, "--workers", "1")
    assert again.returncode == 0 and "0 to analyse" in again.stderr


def test_merge_concatenates_the_sources_per_window(albums, tmp_path):
    cache, merged = tmp_path / "handcrafted", tmp_path / "merged"
    assert _tool("tools/teacher_handcrafted.py", albums, "--cache", cache).returncode == 0
    done = _tool(
        "tools/teacher_merge.py", "--source", f"{cache}:spectral",
        "--source", f"{cache}:spectral:2", "--out", merged,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    track = albums / "high" / "1.wav"
    single, _, _ = TeacherCache(cache, "spectral").load(track)
    joined, _, window = TeacherCache(merged, "merged").load(track)
    assert joined.shape == (2, 3 * 66) and window == 3.0
    assert np.allclose(joined, np.concatenate([single, single, single], axis=1))


def test_scores_find_the_albums_of_a_cache_in_musicnn_layout(albums, tmp_path):
    """Each album's windows point one way: every track's neighbour is its album-mate."""
    sys.path.insert(0, str(REPO / "tools"))
    from teacher_files import audio_files, npz_name, write_arrays, write_index

    cache = tmp_path / "musicnn"
    cache.mkdir()
    index = {}
    rng = np.random.default_rng(0)
    for path in audio_files([albums]):
        direction = np.ones(50) if path.parent.name == "low" else -np.ones(50)
        rows = direction + 0.1 * rng.standard_normal((2, 50))
        layers = {"taggram": 50, "penultimate": 200, "mean_pool": 753, "max_pool": 753}
        arrays = {k: np.resize(rows, (2, n)).astype(np.float16) for k, n in layers.items()}
        arrays["window_seconds"] = np.array(3.0)
        write_arrays(cache / npz_name(path), arrays)
        index[str(path)] = npz_name(path)
    write_index(cache, index)

    done = _tool("tools/teacher_musicnn.py", "--score", albums, "--cache", cache)
    assert done.returncode == 0, done.stderr
    assert "penultimate  1.000" in done.stdout and "chance       0.455" in done.stdout
    alone = _tool("tools/teacher_score.py", albums, "--cache", cache, "--layer", "taggram")
    assert alone.returncode == 0, alone.stderr
    assert "taggram      1.000" in alone.stdout and "penultimate" not in alone.stdout
