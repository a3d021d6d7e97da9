"""Training end to end on a tiny synthetic folder-per-genre dataset.

Three "genres" that a network can tell apart in seconds: sustained tones, white
noise and rhythmic clicks, a few short clips each, written as WAV (and one FLAC)
in a temporary folder. Models are trained for one or two epochs on a handful of
crops, so the whole file runs in well under a minute on two CPU cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from embeddings.checkpoint import load_checkpoint, save_checkpoint
from embeddings.frontend import FrontendConfig, batch_features, split_segments
from embeddings.model import ARCHITECTURES, build_model
from embeddings.training.dataset import FeatureCache, discover
from embeddings.training.evaluate import clip_metrics, clip_probabilities
from embeddings.training.experiment import ExperimentOptions, run_experiment
from embeddings.training.splits import fold_from_split, read_split_file, stratified_folds
from embeddings.training.train import TrainConfig

SR = 22_050
GENRES = ("clicks", "noise", "tones")
PER_GENRE = 4
SECONDS = 4.0


def _clip(genre: str, i: int) -> np.ndarray:
    rng = np.random.default_rng(100 * GENRES.index(genre) + i)
    t = np.arange(int(SECONDS * SR)) / SR
    if genre == "tones":
        f = 220.0 * (1 + i / 4)
        return 0.3 * np.sin(2 * np.pi * f * t) + 0.2 * np.sin(2 * np.pi * 1.5 * f * t)
    if genre == "noise":
        return 0.2 * rng.standard_normal(len(t))
    audio = np.zeros(len(t))
    period = int(SR * (0.25 + 0.05 * i))
    for start in range(0, len(t), period):
        audio[start : start + 200] = rng.uniform(-0.8, 0.8, size=min(200, len(t) - start))
    return audio


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("genres")
    for genre in GENRES:
        (root / genre).mkdir()
        for i in range(PER_GENRE):
            ext = "flac" if (genre == "tones" and i == 0) else "wav"
            sf.write(
                root / genre / f"{genre}.{i:05d}.{ext}", _clip(genre, i).astype(np.float32), SR
            )
    (root / "README.md").write_text("stray files beside the genre folders are ignored")
    (root / "bl.mf").write_text("blues/blues.00000.wav\tblues\n")
    (root / "empty").mkdir()
    return root


def _options(**kw) -> ExperimentOptions:
    train = TrainConfig(max_epochs=2, crops_per_track=2, batch_size=8, patience=5, threads=2)
    base = {"archs": ["resnet18"], "folds": 2, "val_fraction": 0.25, "train": train}
    base.update(kw)
    return ExperimentOptions(**base)


def test_discover_ignores_stray_files(dataset: Path) -> None:
    ds = discover(dataset)
    assert ds.genres == list(GENRES)
    assert len(ds.tracks) == len(GENRES) * PER_GENRE
    assert ds.counts() == dict.fromkeys(GENRES, PER_GENRE)


def test_cached_segments_match_the_inference_front_end(dataset: Path, tmp_path: Path) -> None:
    ds = discover(dataset)
    cache = FeatureCache(tmp_path / "cache", FrontendConfig())
    track = ds.tracks[0]
    first = cache.get(track.path)
    again = cache.get(track.path)  # from disk this time
    audio, _ = sf.read(track.path, dtype="float32")
    expected = batch_features(split_segments(audio, FrontendConfig()), FrontendConfig())
    np.testing.assert_allclose(first.segments, expected, atol=1e-5)
    np.testing.assert_array_equal(first.log_power, again.log_power)


def test_random_crop_equals_front_end_on_the_same_span() -> None:
    from embeddings.frontend import segment_features
    from embeddings.training.augment import crop
    from embeddings.training.dataset import log_power

    config = FrontendConfig()
    audio = _clip("clicks", 1).astype(np.float32)
    start = 40  # frames; aligned with the centred STFT frames of the segment
    seg = audio[start * config.hop_length : start * config.hop_length + config.segment_samples]
    ours = crop(log_power(audio, config), start, config.segment_frames, config.top_db)
    ref = segment_features(seg, config)
    # the only difference is the zero padding of the segment's first and last frames
    inner = slice(5, -5)
    assert np.corrcoef(ours[:, inner].ravel(), ref[:, inner].ravel())[0, 1] > 0.99


def test_folds_never_share_a_track() -> None:
    labels = np.repeat(np.arange(4), 10)
    folds = stratified_folds(labels, k=5, seed=3)
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested.tolist()) == list(range(len(labels)))  # each track tested once
    for f in folds:
        assert not set(f.train.tolist()) & set(f.test.tolist())
        assert np.bincount(labels[f.test]).tolist() == [2, 2, 2, 2]


def test_split_file_forms(tmp_path: Path) -> None:
    keys = ["a/a.0.wav", "a/a.1.wav", "b/b.0.wav", "b/b.1.wav"]
    (tmp_path / "split").mkdir()
    (tmp_path / "split" / "train_filtered.txt").write_text("a/a.0.wav\nb/b.0.wav\nc/c.9.wav\n")
    (tmp_path / "split" / "test_filtered.txt").write_text("a/a.1.wav\nb/b.1.wav\n")
    fold, missing = fold_from_split(keys, read_split_file(tmp_path / "split"))
    assert fold.train.tolist() == [0, 2] and fold.test.tolist() == [1, 3]
    assert missing == {"train": 1}
    (tmp_path / "split.json").write_text(json.dumps({"train": keys[:2], "test": keys[2:]}))
    fold, _ = fold_from_split(keys, read_split_file(tmp_path / "split.json"))
    assert fold.test.tolist() == [2, 3]
    (tmp_path / "bad.json").write_text(json.dumps({"train": keys[:3], "test": keys[2:]}))
    with pytest.raises(AssertionError):
        fold_from_split(keys, read_split_file(tmp_path / "bad.json"))


def test_clip_level_metrics_count_each_track_once() -> None:
    # track 0: 9 segments right, track 1: 1 segment, wrong -> 50% of tracks, not 90%
    probs = [np.tile([[0.9, 0.1]], (9, 1)), np.array([[0.8, 0.2]])]
    pred = clip_probabilities(probs).argmax(axis=1)
    m = clip_metrics(np.array([0, 1]), pred, ["x", "y"])
    assert m["accuracy"] == 0.5 and m["n_tracks"] == 2
    assert m["per_genre_recall"] == {"x": 1.0, "y": 0.0}


def test_training_runs_end_to_end(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    metrics = run_experiment(dataset, run, tmp_path / "cache", _options(), log=lambda _: None)
    for name in ("metrics.json", "comparison.md", "confusion_resnet18.png",
                 "learning_curves_resnet18.png", "genre_resnet18.pt"):  # fmt: skip
        assert (run / name).is_file(), name
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk["summary"]["resnet18"]["folds"] == 2
    # clip level: the held-out sides together hold every track exactly once
    n_test = sum(f["n_tracks"] for f in on_disk["per_fold"]["resnet18"])
    assert n_test == len(GENRES) * PER_GENRE
    assert set(on_disk["summary"]["resnet18"]["per_genre_recall"]) == set(GENRES)
    assert np.array(on_disk["summary"]["resnet18"]["confusion"]).sum() == n_test
    for record in on_disk["folds"]:
        train, val, test = set(record["train"]), set(record["val"]), set(record["test"])
        assert not (train & test) and not (val & test) and not (train & val)
        assert len(train | val | test) == len(GENRES) * PER_GENRE
    model = load_checkpoint(run / "genre_resnet18.pt")
    assert model.trained and model.genres == list(GENRES) and model.arch == "resnet18"
    assert model.info["cv_folds"] == 2
    assert metrics["final_model"]["model_id"] == model.model_id


def test_checkpoint_reloads_with_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    for arch in ARCHITECTURES:
        net = build_model(arch, 5).eval()
        # fp16 on disk: give the live network the same rounded weights first
        with torch.no_grad():
            for p in net.state_dict().values():
                if p.is_floating_point():
                    p.copy_(p.half().float())
        x = torch.randn(2, 1, 128, 130)
        path = tmp_path / f"{arch}.pt"
        save_checkpoint(path, net, arch, list("abcde"), FrontendConfig(), trained=True)
        loaded = load_checkpoint(path)
        with torch.no_grad():
            torch.testing.assert_close(loaded.network(x), net(x), rtol=0, atol=0)
            assert loaded.network.embed(x).shape == (2, net.embedding_dim)
        assert loaded.network.cam_layer is not None


def test_compare_produces_the_table(dataset: Path, tmp_path: Path) -> None:
    from ui.cli import app

    runner = CliRunner()
    out = tmp_path / "cmp"
    result = runner.invoke(
        app,
        ["train", str(dataset), "--compare", "--folds", "2", "--epochs", "1", "--crops", "2",
         "--batch-size", "8", "--no-final", "--run-dir", str(out), "--cache-dir",
         str(tmp_path / "cache"), "--no-progress", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    expected = {"resnet18", "vgg", "crnn", "transformer", "svm", "logreg", "mlp"}
    assert set(data["summary"]) == expected
    table = (out / "comparison.md").read_text()
    for name in expected:
        assert f"| {name} |" in table
    assert not (out / "genre_resnet18.pt").exists()  # --no-final


def test_dataset_report(dataset: Path, tmp_path: Path) -> None:
    from ui.cli import app

    result = CliRunner().invoke(
        app, ["dataset-report", str(dataset), "--output", str(tmp_path / "r"), "--format", "html",
              "--no-progress", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["genres"] == dict.fromkeys(GENRES, PER_GENRE)
    assert data["sample_rates"] == {str(SR): len(GENRES) * PER_GENRE}
    for name in ("report.html", "genre_counts.png", "durations.png", "example_spectrograms.png"):
        assert (tmp_path / "r" / name).is_file()


def test_train_cli_rejects_unknown_arch(dataset: Path) -> None:
    from ui.cli import app

    result = CliRunner().invoke(app, ["train", str(dataset), "--arch", "alexnet"])
    assert result.exit_code == 2


def test_feature_cache_writes_side_by_side_never_collide(tmp_path):
    """Two trainings sharing a cache write the same file at once; neither may fail."""
    from concurrent.futures import ThreadPoolExecutor

    from embeddings.atomic import atomic_write

    target = tmp_path / "same.mel.npz"

    def write(i: int) -> None:
        atomic_write(target, lambda fh: fh.write(bytes([i % 256]) * 200_000))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(64)))
    assert target.stat().st_size == 200_000
    assert [p.name for p in tmp_path.iterdir()] == ["same.mel.npz"]  # no temporaries left


def test_training_skips_unreadable_and_silent_files_and_reads_m4a(
    dataset: Path, tmp_path: Path
) -> None:
    import shutil

    from audio_fixtures import write_m4a

    root = tmp_path / "genres"
    shutil.copytree(dataset, root)
    write_m4a(root / "tones" / "tones.m4a", _clip("tones", 5).astype(np.float32), SR)
    (root / "noise" / "broken.mp3").write_text("not audio\n" * 50)
    (root / "clicks" / "empty.wav").write_bytes(b"")
    sf.write(root / "clicks" / "silence.wav", np.zeros(SR, np.float32), SR)
    lines: list[str] = []
    metrics = run_experiment(
        root, tmp_path / "run", tmp_path / "cache", _options(final_model=False), log=lines.append
    )
    skipped = {item["track"]: item["reason"] for item in metrics["unreadable"]}
    assert set(skipped) == {"noise/broken.mp3", "clicks/empty.wav", "clicks/silence.wav"}
    assert skipped["clicks/empty.wav"] == "empty file (0 bytes)"
    assert skipped["clicks/silence.wav"].startswith("silent")
    assert skipped["noise/broken.mp3"].startswith("not a readable audio file")
    assert metrics["counts"] == {"clicks": PER_GENRE, "noise": PER_GENRE, "tones": PER_GENRE + 1}
    assert any("skipped noise/broken.mp3" in line for line in lines)
    tested = sum(f["n_tracks"] for f in metrics["per_fold"]["resnet18"])
    assert tested == len(GENRES) * PER_GENRE + 1  # the M4A was trained and tested on


def test_dataset_without_its_last_readable_genre_is_refused(dataset: Path) -> None:
    ds = discover(dataset)
    noise = {t.key for t in ds.tracks if t.genre == "noise"}
    assert discover(dataset).without(noise).genres == ["clicks", "tones"]
    with pytest.raises(ValueError, match="only 1 genre"):
        ds.without(noise | {t.key for t in ds.tracks if t.genre == "tones"})


def test_final_only_within_a_budget_on_excerpts_trains_one_network(
    dataset: Path, tmp_path: Path
) -> None:
    """``sonic train --final-only --minutes M --max-seconds S``: no folds, the epochs cut to
    the budget after the first one, each track an excerpt; the checkpoint says what ran."""
    from ui.cli import app

    run, cache = tmp_path / "run", tmp_path / "cache"
    result = CliRunner().invoke(app, [
        "train", str(dataset), "--final-only", "--epochs", "4", "--minutes", "0.1",
        "--max-seconds", "3", "--crops", "2", "--batch-size", "8", "--run-dir", str(run),
        "--cache-dir", str(cache), "--no-progress", "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["summary"] == {} and metrics["folds"] == []
    assert metrics["protocol"]["max_seconds"] == 3.0
    final = metrics["final_model"]
    assert final["epochs_asked"] == 4 and 1 <= final["epochs"] <= 4
    assert len(final["history"]) == final["epochs"]
    assert not (run / "confusion_resnet18.png").exists()
    model = load_checkpoint(run / "genre_resnet18.pt")
    assert model.genres == list(GENRES) and model.info["epochs"] == final["epochs"]
    assert model.info["cv_clip_accuracy_mean"] is None
    # each track was cut to a 3-s excerpt, cached apart from the whole track's features
    excerpts = sorted(cache.glob("*-x3.mel.npz"))
    assert len(excerpts) == len(GENRES) * PER_GENRE
    with np.load(excerpts[0]) as data:
        frames = data["log_power"].shape[1]
    assert frames <= 3 * SR // 512 + 2 < SECONDS * SR // 512


def test_a_time_budget_cuts_the_epochs_and_replans_the_schedule() -> None:
    from dataclasses import replace

    from embeddings.training.train import train_network

    rng = np.random.default_rng(0)
    clips = [rng.normal(-40, 10, size=(128, 200)).astype(np.float32) for _ in range(6)]
    labels = np.array([0, 1, 2, 0, 1, 2])
    config = TrainConfig(max_epochs=5, crops_per_track=2, batch_size=4, threads=2,
                         max_minutes=1e-6)  # fmt: skip
    result = train_network(clips, labels, 3, FrontendConfig(), config)
    assert result.planned_epochs == 1 and len(result.history) == 1  # one epoch fits, then stop
    unbounded = train_network(clips, labels, 3, FrontendConfig(), replace(config, max_minutes=None))
    assert unbounded.planned_epochs == 5 and len(unbounded.history) == 5
