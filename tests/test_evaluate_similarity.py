"""``sonic evaluate-similarity``: the metric on constructed embeddings, then end to end.

The end-to-end folder holds three synthetic "albums" that any timbre summary
separates (sine melodies, filtered noise, click tracks), an album of one track
(skipped with a warning) and a broken file (reported, not fatal); a fake teacher
cache is written beside it. Tracks are four seconds, so every network sees two
segments per track and the run takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from embeddings.training.similarity_metrics import (
    bootstrap_interval,
    chance_and_ceiling,
    paired_difference,
    precision_at_k,
    whitening,
)
from ui.cli import app

SR = 22050


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_precision_at_k_on_constructed_embeddings() -> None:
    labels = ["a", "a", "a", "b", "b", "c"]
    # a0..a2 close to the x axis, b0 b1 close to y, c0 between a and b but nearer b
    vectors = np.array(
        [[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.8, 0.0, 0.2],
         [0.0, 1.0, 0.0], [0.1, 0.9, 0.0],
         [0.3, 0.7, 0.0]]
    )  # fmt: skip
    p = precision_at_k(vectors, labels, k=2)
    # a's two nearest are the other a's; b0's are b1 and c0; b1's are b0 and c0;
    # c0's nearest are b1 and b0: no c neighbour exists
    np.testing.assert_allclose(p, [1, 1, 1, 0.5, 0.5, 0])
    assert p.mean() == pytest.approx(4 / 6)
    chance, ceiling = chance_and_ceiling(labels, k=2)
    assert chance == pytest.approx((3 * 2 / 5 + 2 * 1 / 5 + 0) / 6)
    assert ceiling == pytest.approx((3 * 1 + 2 * 0.5 + 0) / 6)
    # k is capped at n - 1, and cosine ignores the vectors' lengths
    np.testing.assert_allclose(
        precision_at_k(vectors * 7, labels, k=50), [2 / 5] * 3 + [1 / 5] * 2 + [0]
    )


def _album_audio(family: str, i: int, seconds: float = 4.0) -> np.ndarray:
    rng = np.random.default_rng(10 * i + len(family))
    t = np.arange(int(seconds * SR)) / SR
    if family == "sines":
        notes = 330.0 * 2 ** (np.array([0, 4, 7, 12]) / 12) * (1 + 0.05 * i)
        f = notes[(t * 4).astype(int) % 4]
        return 0.3 * np.sin(2 * np.pi * np.cumsum(f) / SR)
    if family == "noise":
        x = rng.standard_normal(len(t))
        return 0.1 * np.convolve(x, np.ones(8 + 4 * i) / 4, mode="same")
    out = np.zeros(len(t))
    for start in range(0, len(t) - 300, int(SR * (0.3 + 0.07 * i))):
        out[start : start + 300] += np.hanning(300) * rng.uniform(0.5, 0.9)
    return out


@pytest.fixture(scope="module")
def albums(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("albums")
    for family in ("sines", "noise", "clicks"):
        for i in range(3):
            path = root / family / f"{family}{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, _album_audio(family, i).astype(np.float32), SR)
    (root / "single").mkdir()
    sf.write(root / "single" / "only.wav", _album_audio("sines", 5).astype(np.float32), SR)
    (root / "noise" / "broken.flac").write_text("not a flac file")
    teacher = root.parent / f"{root.name}-teacher"
    teacher.mkdir()
    index = {}
    rng = np.random.default_rng(0)
    centres = {f: rng.standard_normal(16) for f in ("sines", "noise", "clicks")}
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".wav", ".flac")):
        vectors = centres.get(path.parent.name, np.zeros(16)) + 0.1 * rng.standard_normal((2, 16))
        np.savez(teacher / f"{path.stem}.npz", penultimate=vectors.astype(np.float16))
        index[str(path.resolve())] = f"{path.stem}.npz"
    (teacher / "index.json").write_text(json.dumps(index))
    return root


def test_bootstrap_interval_narrows_with_more_tracks() -> None:
    rng = np.random.default_rng(1)
    few = rng.choice([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], 20)
    many = np.tile(few, 25)  # the same distribution of scores, 25 times as many tracks
    low, high = bootstrap_interval(few)
    assert low < few.mean() < high
    low_many, high_many = bootstrap_interval(many)
    assert (high_many - low_many) < 0.4 * (high - low)  # ~1/5 as wide
    assert bootstrap_interval(np.full(10, 0.6)) == pytest.approx((0.6, 0.6))


def test_paired_difference_sees_a_shift_that_separate_intervals_miss() -> None:
    rng = np.random.default_rng(2)
    hardness = rng.uniform(0.0, 1.0, 40)  # some tracks are hard for every method
    a = np.clip(hardness + 0.04, 0, 1)
    b = np.clip(hardness + 0.04 + rng.normal(0, 0.01, 40), 0, 1)
    mean, low, high = paired_difference(b, a)
    assert low <= mean <= high and abs(mean) < 0.01
    shifted = np.clip(hardness + 0.1, 0, 1)
    mean, low, high = paired_difference(shifted, a)
    assert 0.05 < low <= mean <= high < 0.07  # the paired shift is resolved...
    a_low, a_high = bootstrap_interval(a)
    s_low, _ = bootstrap_interval(shifted)
    assert s_low < a_high  # ...where the two separate intervals overlap


def test_whitening_lets_a_quiet_direction_outvote_a_loud_shared_one() -> None:
    # two albums told apart only by a small offset on axis 1, while axes 0 and 2 carry
    # a large variation, unrelated to the album, on top of a common positive level
    # (as post-ReLU averages do): the raw cosine follows the loud axes
    rng = np.random.default_rng(3)

    def tracks(n: int) -> tuple[np.ndarray, np.ndarray]:
        album = np.repeat([0, 1], n // 2)
        x = np.column_stack([
            rng.normal(20.0, 5.0, n), 0.3 * (2 * album - 1) + rng.normal(0, 0.05, n),
            rng.normal(20.0, 5.0, n),
        ])  # fmt: skip
        return x, album

    reference, _ = tracks(400)
    x, albums = tracks(40)
    mean, projection = whitening(reference, eps=0.0)
    white = (reference - mean) @ projection
    assert np.allclose(np.cov(white.T), np.eye(3), atol=1e-6)  # what whitening means
    raw = precision_at_k(x, albums).mean()
    whitened = precision_at_k((x - mean) @ projection, albums).mean()
    assert raw < 0.8 and whitened > 0.95


def test_evaluate_similarity_end_to_end(albums: Path) -> None:
    teacher = albums.parent / f"{albums.name}-teacher"
    result = CliRunner().invoke(
        app,
        ["evaluate-similarity", str(albums), "-k", "2", "--random-seeds", "0,1",
         "--teacher-cache", str(teacher), "--threads", "1", "--no-progress", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tracks"] == 9 and data["albums"] == 3
    assert data["skipped_albums"] == {"single": 1}
    assert [f["path"].endswith("broken.flac") for f in data["failed"]] == [True]
    assert data["ceiling"] == 1.0 and data["chance"] == pytest.approx(2 / 8)
    by_kind = {m["kind"]: m for m in data["methods"]}
    assert set(by_kind) == {"genre model", "random", "handcrafted", "teacher"}
    assert set(by_kind["random"]["per_seed"]) == {"0", "1"}
    assert by_kind["handcrafted"]["precision"] >= 0.8  # the albums are clearly distinct
    assert by_kind["teacher"]["precision"] == 1.0  # the fake teacher separates them exactly
    for method in data["methods"]:
        assert 0.0 <= method["precision"] <= 1.0
        assert set(method["per_album"]) == {"sines", "noise", "clicks"}
    assert len(data["track_files"]) == 9
    # each query track's album, in track order (the fixture's folders are not links)
    assert data["track_albums"] == [Path(f).parent.name for f in data["track_files"]]
    assert sorted(set(data["track_albums"])) == ["clicks", "noise", "sines"]
    for method in (m for m in data["methods"] if m["kind"] != "random"):
        # per-track scores in track order, for paired comparisons, and their interval
        assert len(method["per_track"]) == 9
        assert np.mean(method["per_track"]) == pytest.approx(method["precision"])
        low, high = method["interval_95"]
        assert low <= method["precision"] <= high
    assert by_kind["teacher"]["interval_95"] == [1.0, 1.0]
    assert "album 'single' has 1 track(s); skipped" in result.stderr


def test_evaluate_similarity_prints_a_table(albums: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["evaluate-similarity", str(albums), "--random-seeds", "none", "--max-seconds", "3",
         "--threads", "1", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "same-album precision@5 on 9 tracks in 3 albums" in result.stdout
    assert "handcrafted" in result.stdout and "shipped genre_resnet18.pt" in result.stdout
    assert "random" not in result.stdout
