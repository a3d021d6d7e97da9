"""Self-supervised pretraining, distillation and ``sonic train --init``, on synthetic audio.

The learning tests use a tiny front end (8 kHz, 32 mel bands, 1-second views) and
a tiny convolutional encoder, so that tens of steps take a few seconds on two
CPU cores; the command-line tests run the real ResNet18 for two steps only.
Eight synthetic "tracks" differ in ways a spectrogram shows (tones, noise colours,
click rates, chords), so two views of one track share something the network can
find and views of different tracks do not.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn
from typer.testing import CliRunner

from embeddings.checkpoint import (
    DEFAULT_CHECKPOINT,
    BackboneOnlyError,
    GenreModel,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from embeddings.frontend import FrontendConfig
from embeddings.model import build_model, classifier_keys, load_backbone
from embeddings.training.contrastive import nt_xent, pair_statistics, supervised_nt_xent
from embeddings.training.dataset import excerpt_offset, load_excerpt, log_power
from embeddings.training.pretrain import PretrainConfig, pretrain_network
from embeddings.training.teacher import TeacherCache, TeacherTrack, load_targets, view_targets
from embeddings.training.track_samplers import AlbumSampler, album_labels
from embeddings.training.train import TrainConfig, parameter_groups, train_network
from embeddings.training.unlabelled import (
    UnlabelledTrack,
    budget_order,
    discover_audio,
    load_corpus,
)
from embeddings.training.view_augment import (
    VIEW_PRESETS,
    Crops,
    ViewConfig,
    cut_windows,
    draw_crops,
    make_views,
    reference_and_normalise,
    warp,
)
from ui.cli import app
from ui.options import checkpoint_argument

TINY = FrontendConfig(sample_rate=8000, n_mels=32, n_fft=512, hop_length=128, segment_seconds=1.0)
SECONDS = 6.0


def _signal(kind: int, sr: int = 8000, seconds: float = SECONDS) -> np.ndarray:
    rng = np.random.default_rng(kind)
    t = np.arange(int(seconds * sr)) / sr
    if kind < 3:  # tones, one pitch each
        f = (200.0, 550.0, 1400.0)[kind]
        return 0.3 * np.sin(2 * np.pi * f * t) + 0.1 * np.sin(2 * np.pi * 2 * f * t)
    if kind < 5:  # white and low-passed noise
        x = rng.standard_normal(len(t))
        return 0.2 * (x if kind == 3 else np.convolve(x, np.ones(16) / 4, mode="same"))
    if kind < 7:  # click tracks at two rates
        out = 0.005 * rng.standard_normal(len(t))
        for start in range(0, len(t) - 100, int(sr * (0.25 if kind == 5 else 0.6))):
            out[start : start + 100] += rng.uniform(-0.8, 0.8, 100)
        return out
    return sum(0.15 * np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0, 3000.0))


# albums for the album-positive tests: tones, noises, clicks, and the chord alone
ALBUM_OF_KIND = (0, 0, 0, 1, 1, 2, 2, 3)


def _tracks(n: int = 8) -> list[UnlabelledTrack]:
    return [
        UnlabelledTrack(
            Path(f"/synthetic/album{ALBUM_OF_KIND[k]}/{k}.wav"),
            log_power(_signal(k).astype(np.float32), TINY).astype(np.float16),
            0.0,
            SECONDS,
        )
        for k in range(n)
    ]


class TinyEncoder(nn.Module):
    """Three strided convolutions and global pooling: the interface pretraining needs."""

    embedding_dim = 64

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for cin, cout in ((1, 16), (16, 32), (32, 64)):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)]
            layers += [nn.BatchNorm2d(cout), nn.ReLU()]
        self.features = nn.Sequential(*layers)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


# masks scaled to the tiny front end's 32 bands and 63 frames
TINY_VIEWS = ViewConfig(freq_width=4, time_width=8)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """One thread here (steadier on a shared machine); the rest of the suite keeps its own."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _config(**kw) -> PretrainConfig:
    base = dict(
        arch="tiny", batch_size=16, steps=25, minutes=None, lr=3e-3, warmup=0.1,
        temperature=0.2, precision="fp32", threads=1, views=TINY_VIEWS,
    )  # fmt: skip
    base.update(kw)
    return PretrainConfig(**base)


def _first_last(history: list[dict], key: str, n: int = 6) -> tuple[float, float]:
    values = [h[key] for h in history if h[key] is not None]
    return float(np.mean(values[:n])), float(np.mean(values[-n:]))


# -- the loss and the views ------------------------------------------------------------


def test_nt_xent_prefers_matching_pairs() -> None:
    z1 = torch.eye(4)
    assert nt_xent(z1, z1.clone(), 0.1) < nt_xent(z1, z1.roll(1, dims=0), 0.1)
    stats = pair_statistics(z1, z1.clone())
    assert stats["top1"] == 1.0 and stats["positive_cosine"] == pytest.approx(1.0)
    assert stats["negative_cosine"] == pytest.approx(0.0)


def test_views_are_normalised_and_gain_is_a_no_op() -> None:
    tracks = _tracks(2)
    specs = [t.log_power for t in tracks]
    frames = TINY.segment_frames
    # with rate 1 and no shift the warp is an exact copy of the window
    raw = cut_windows(specs, Crops(np.array([0, 1]), np.array([5, 9]), np.ones(2)), frames)
    copy = warp(torch.from_numpy(raw), torch.ones(2), torch.zeros(2), frames)
    np.testing.assert_allclose(copy.numpy(), raw[:, :, :frames], atol=1e-4)
    # a constant gain in dB is removed by referencing and normalisation: why there is
    # no separate gain augmentation (the noise at a random SNR covers level changes)
    a = reference_and_normalise(torch.from_numpy(raw), TINY.top_db)
    b = reference_and_normalise(torch.from_numpy(raw + 17.0), TINY.top_db)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    plain = ViewConfig(freq_masks=0, time_masks=0)
    crops = draw_crops(np.array([0, 1, 0, 1]), np.array([t.frames for t in tracks]), frames,
                       plain, np.random.default_rng(0))  # fmt: skip
    views = make_views(cut_windows(specs, crops, frames), crops, frames, TINY.top_db, plain,
                       torch.Generator().manual_seed(0))  # fmt: skip
    assert views.shape == (4, 1, TINY.n_mels, frames)
    flat = views.flatten(1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(flat.std(1, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)


def test_crops_preset_keeps_the_mix_of_each_view() -> None:
    # 'crops' views differ from the front end's segment only by position and masks:
    # no EQ, noise, pitch or tempo change, so the colour of a mix survives
    tracks = _tracks(2)
    specs = [t.log_power for t in tracks]
    frames = TINY.segment_frames
    unmasked = replace(VIEW_PRESETS["crops"], freq_masks=0, time_masks=0)
    crops = draw_crops(np.array([0, 1, 0, 1]), np.array([t.frames for t in tracks]), frames,
                       unmasked, np.random.default_rng(3))  # fmt: skip
    assert np.all(crops.rate == 1.0)
    raw = cut_windows(specs, crops, frames)
    views = make_views(raw, crops, frames, TINY.top_db, unmasked, torch.Generator())
    expected = reference_and_normalise(torch.from_numpy(raw[:, :, :frames]), TINY.top_db)
    torch.testing.assert_close(views[:, 0], expected, atol=1e-4, rtol=0)
    # the full preset does change them
    full = replace(VIEW_PRESETS["full"], freq_masks=0, time_masks=0, noise_prob=1.0)
    changed = make_views(raw, crops, frames, TINY.top_db, full, torch.Generator().manual_seed(1))
    assert (changed[:, 0] - expected).abs().mean() > 0.05


# -- learning ---------------------------------------------------------------------------


def _embed_fresh_views(
    network: nn.Module, tracks: list[UnlabelledTrack], per_track: int, seed: int
) -> torch.Tensor:
    """``embed()`` of ``per_track`` new views of every track, view-major: row v*n + t."""
    owner = np.tile(np.arange(len(tracks)), per_track)
    frames = TINY.segment_frames
    crops = draw_crops(owner, np.array([t.frames for t in tracks]), frames, TINY_VIEWS,
                       np.random.default_rng(seed))  # fmt: skip
    raw = cut_windows([t.log_power for t in tracks], crops, frames)
    views = make_views(raw, crops, frames, TINY.top_db, TINY_VIEWS,
                       torch.Generator().manual_seed(seed))  # fmt: skip
    with torch.no_grad():
        return network.embed(views)


def test_contrastive_loss_falls_and_positives_end_closer() -> None:
    tracks = _tracks()
    torch.manual_seed(0)
    network = TinyEncoder()
    result = pretrain_network(network, tracks, TINY, _config())
    assert result.steps == 25 and result.stopped == "steps"
    first, last = _first_last(result.history, "contrastive")
    assert last < first - 0.4, (first, last)
    # two fresh views of each track, through the embedding we keep (before the head)
    e = torch.nn.functional.normalize(_embed_fresh_views(network, tracks, 2, seed=123), dim=1)
    sim = e[:8] @ e[8:].T
    positive = sim.diagonal().mean()
    negative = sim[~torch.eye(8, dtype=torch.bool)].mean()
    assert positive > negative + 0.05, (float(positive), float(negative))


def test_supervised_nt_xent_is_nt_xent_with_one_label_per_track() -> None:
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 8), torch.randn(6, 8)
    per_track = torch.cat([torch.arange(6), torch.arange(6)])
    assert supervised_nt_xent(torch.cat([z1, z2]), per_track, 0.3) == pytest.approx(
        float(nt_xent(z1, z2, 0.3)), rel=1e-5
    )
    # six tracks in two albums: embeddings that merge each album's tracks against
    # embeddings that keep every track apart; each labelling prefers its own
    merged = torch.eye(8)[[0, 0, 0, 1, 1, 1] * 2]
    apart = torch.eye(8)[[0, 1, 2, 3, 4, 5] * 2]
    per_album = torch.tensor([0, 0, 0, 1, 1, 1] * 2)
    assert supervised_nt_xent(merged, per_album, 0.1) < supervised_nt_xent(apart, per_album, 0.1)
    assert supervised_nt_xent(apart, per_track, 0.1) < supervised_nt_xent(merged, per_track, 0.1)
    with pytest.raises(ValueError, match="no view has a positive"):
        supervised_nt_xent(torch.randn(4, 3), torch.arange(4))


def test_album_sampler_draws_several_tracks_of_each_album_and_visits_all() -> None:
    albums = album_labels(_tracks())
    assert albums.tolist() == list(ALBUM_OF_KIND)
    sampler = AlbumSampler(albums, 2, np.random.default_rng(0))
    seen: set[int] = set()
    for _ in range(12):
        batch = sampler.take(4)
        assert len(set(batch.tolist())) == 4  # distinct tracks
        # at least one album contributes two tracks, so cross-track positives exist
        assert np.bincount(albums[batch]).max() >= 2
        seen |= set(batch.tolist())
    assert seen == set(range(8))


def _album_gap(network: nn.Module, tracks: list[UnlabelledTrack]) -> float:
    """Mean cosine of different tracks in one album minus that of tracks in different albums."""
    e = _embed_fresh_views(network, tracks, 4, seed=5).reshape(4, len(tracks), -1).mean(0)
    e = torch.nn.functional.normalize(e, dim=1)
    sim = e @ e.T
    albums = torch.tensor(ALBUM_OF_KIND[: len(tracks)])
    same = (albums[:, None] == albums[None, :]) & ~torch.eye(len(tracks), dtype=torch.bool)
    cross = albums[:, None] != albums[None, :]
    return float(sim[same].mean() - sim[cross].mean())


def test_album_positives_pull_the_tracks_of_an_album_together() -> None:
    tracks = _tracks()
    gaps = {}
    for positives in ("track", "album"):
        torch.manual_seed(0)
        network = TinyEncoder()
        config = _config(positives=positives, tracks_per_album=3, steps=40)
        result = pretrain_network(network, tracks, TINY, config)
        assert result.steps == 40
        first, last = _first_last(result.history, "contrastive")
        assert last < first, (positives, first, last)
        gaps[positives] = _album_gap(network, tracks)
    # the same tracks, steps and seed: only what counts as a positive differs
    assert gaps["album"] > gaps["track"] + 0.05, gaps
    with pytest.raises(ValueError, match="at least two folders"):
        pretrain_network(TinyEncoder(), tracks[:3], TINY, _config(positives="album"))


def test_time_budget_stops_cleanly_and_plans_the_schedule() -> None:
    ticks = iter(np.arange(0, 1000, 6.0))  # every clock reading advances 6 "seconds"
    result = pretrain_network(
        TinyEncoder(), _tracks(4), TINY, _config(steps=None, minutes=1.0, batch_size=8),
        clock=lambda: float(next(ticks)),
    )  # fmt: skip
    assert result.stopped == "time" and 0 < result.steps < 10
    lrs = [h["lr"] for h in result.history]
    assert max(lrs) <= 3e-3 and lrs[-1] < 0.2 * max(lrs)  # cosine decays to the budget's end


def _write_teacher(directory: Path, tracks: list[UnlabelledTrack], dim: int = 8) -> None:
    directory.mkdir(parents=True)
    index = {}
    rng = np.random.default_rng(7)
    for k, track in enumerate(tracks[:-2]):  # the last two tracks have no teacher entry
        base = rng.standard_normal(dim)
        windows = base + 0.1 * rng.standard_normal((int(SECONDS // 3), dim))
        np.savez(
            directory / f"{k}.npz",
            penultimate=windows.astype(np.float16),
            taggram=np.abs(windows[:, :5]).astype(np.float16),
        )
        index[str(track.path)] = f"{k}.npz"
    (directory / "index.json").write_text(json.dumps(index))


def test_distillation_loss_falls(tmp_path: Path) -> None:
    tracks = _tracks()
    _write_teacher(tmp_path / "teacher", tracks)
    cache = TeacherCache(tmp_path / "teacher", "penultimate")
    teacher, dim = load_targets(cache, [t.path for t in tracks], [(0.0, SECONDS)] * len(tracks))
    assert dim == 8 and teacher[-1] is None and teacher[0] is not None
    torch.manual_seed(0)
    result = pretrain_network(TinyEncoder(), tracks, TINY, _config(), teacher, dim)
    first, last = _first_last(result.history, "teacher")
    assert last < first - 0.2, (first, last)
    with pytest.raises(ValueError, match="not in"):
        TeacherCache(tmp_path / "teacher", "no_such_layer").load(tracks[0].path)


def test_teacher_target_is_the_overlap_weighted_mean() -> None:
    entry = TeacherTrack(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32), 0, 3.0, 3.0)
    targets, valid = view_targets(
        [entry, None], np.array([0, 0, 1, 0]), np.array([1.0, 3.0, 0.0, 30.0]),
        np.array([4.0, 6.0, 3.0, 33.0]), 2,
    )  # fmt: skip
    np.testing.assert_allclose(targets[0], [2 / 3, 1 / 3])  # 2 s of window 0, 1 s of window 1
    np.testing.assert_allclose(targets[1], [0.0, 1.0])
    assert valid.tolist() == [True, True, False, False]  # no entry; beyond the last window


# -- files, exclusion, checkpoints and the command line ---------------------------------


def _wav(path: Path, kind: int, seconds: float = 4.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = _signal(kind, 22050, seconds).astype(np.float32)
    sf.write(path, audio, 22050)
    return path


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("unlabelled")
    for k in range(4):
        _wav(root / "game" / f"track{k}.wav", k)
    _wav(root / "held_out" / "score.wav", 5)
    _wav(root / ".hidden" / "skip.wav", 6)
    (root / "game" / "broken.flac").write_text("not audio")
    return root


def test_discovery_excludes_held_out_folders(unlabelled: Path, tmp_path: Path) -> None:
    files, excluded = discover_audio([unlabelled], [unlabelled / "held_out"])
    names = sorted(p.name for p in files)
    assert names == ["broken.flac", "track0.wav", "track1.wav", "track2.wav", "track3.wav"]
    assert excluded == 1
    # a held-out set of symlinks into the library keeps its targets out too
    held = tmp_path / "held"
    held.mkdir()
    (held / "link.wav").symlink_to(unlabelled / "game" / "track2.wav")
    files, excluded = discover_audio([unlabelled / "game"], [held])
    assert "track2.wav" not in {p.name for p in files} and excluded == 1


def test_memory_cap_takes_folders_in_turn_and_decodes_no_more(tmp_path: Path) -> None:
    sizes = {"a": 4, "b": 2, "c": 1}
    files = [tmp_path / f / f"{f}{i}.wav" for f, n in sizes.items() for i in range(n)]
    order = budget_order(files, seed=0)
    assert sorted(order) == sorted(files) and order == budget_order(files, seed=0)
    assert len({p.parent for p in order[:3]}) == 3  # one of each folder before any repeat
    assert len({p.parent for p in order[3:5]}) == 2
    for k, path in enumerate(files):
        _wav(path, k)
    frontend = FrontendConfig()
    one_track = FrontendConfig().n_mels * (1 + int(1.0 * frontend.sample_rate) // 512) * 2
    for workers in (1, 2):
        cache = tmp_path / f"cache{workers}"
        corpus = load_corpus(files, cache, frontend, max_seconds=1.0, workers=workers,
                             max_bytes=int(2.5 * one_track))  # fmt: skip
        assert len(corpus.tracks) == 3 and corpus.left_out == 4, workers
        assert {t.path.parent.name for t in corpus.tracks} == set(sizes)
        assert [t.path for t in corpus.tracks] == sorted(t.path for t in corpus.tracks)
    assert len(list((tmp_path / "cache1").glob("*.npz"))) == 3  # the rest never decoded
    whole = load_corpus(files, tmp_path / "cache1", frontend, max_seconds=1.0)
    assert len(whole.tracks) == 7 and whole.left_out == 0


def test_excerpts_are_fixed_per_file_and_stay_within_the_teacher(tmp_path: Path) -> None:
    assert excerpt_offset(Path("/a.wav"), 30.0, 90.0, 0) == 0.0  # short: from the start
    offsets = {excerpt_offset(Path(f"/{i}.wav"), 600.0, 90.0, 0) for i in range(20)}
    assert len(offsets) == 20 and all(0 <= o <= 510 for o in offsets)
    assert excerpt_offset(Path("/0.wav"), 600.0, 90.0, 0) in offsets  # same file, same offset
    assert all(excerpt_offset(Path(f"/{i}.wav"), 600.0, 90.0, 0, 100.0) <= 10 for i in range(20))
    assert excerpt_offset(Path("/0.wav"), 600.0, 90.0, 0, 60.0) == 0.0
    # only the excerpt is read, and it is the audio at the offset
    ramp = np.linspace(-0.5, 0.5, 8000 * 20, dtype=np.float32)
    sf.write(tmp_path / "long.wav", ramp, 8000, subtype="FLOAT")
    audio, offset, duration = load_excerpt(tmp_path / "long.wav", 8000, 4.0, seed=3)
    assert duration == pytest.approx(20.0) and 0 < offset <= 16 and len(audio) == 4 * 8000
    start = int(round(offset * 8000))
    np.testing.assert_array_equal(audio, ramp[start : start + 4 * 8000])


def test_sonic_pretrain_writes_a_backbone_that_ingest_refuses(
    unlabelled: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ssl.pt"
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    index = {}
    for k in range(3):  # track3 has no teacher entry
        np.savez(teacher / f"{k}.npz", taggram=np.full((1, 6), 0.1 * k, np.float16))
        index[str((unlabelled / "game" / f"track{k}.wav").resolve())] = f"{k}.npz"
    (teacher / "index.json").write_text(json.dumps(index))
    result = CliRunner().invoke(
        app,
        ["pretrain", str(unlabelled), "--exclude", str(unlabelled / "held_out"),
         "--checkpoint", str(out), "--steps", "2", "--minutes", "0", "--batch-size", "4",
         "--max-seconds", "3", "--cache-dir", str(tmp_path / "cache"), "--threads", "1",
         "--teacher-cache", str(teacher), "--teacher-layer", "taggram", "--views", "full",
         "--no-progress", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 2 and summary["tracks"] == 4 and summary["failed"] == 1
    assert summary["teacher"]["tracks_covered"] == 3 and summary["teacher"]["dim"] == 6
    model = load_checkpoint(out)
    assert model.kind == "backbone" and model.genres == [] and model.arch == "resnet18"
    assert model.info["pretrain_config"]["max_seconds"] == 3
    assert model.info["pretrain_config"]["views"] == VIEW_PRESETS["full"].to_dict()
    log = json.loads((tmp_path / "ssl.log.json").read_text())
    assert [h["step"] for h in log["history"]] == [1, 2]
    assert all(np.isfinite(h["loss"]) for h in log["history"])
    assert all(h["teacher_views"] > 0 and h["teacher"] is not None for h in log["history"])
    cached = list((tmp_path / "cache").glob("*.ssl-3-0*.npz"))
    assert len(cached) == 4
    with np.load(cached[0]) as data:
        assert data["log_power"].dtype == np.float16
        assert data["log_power"].shape[1] <= 1 + 3 * 22050 // 512

    with pytest.raises(BackboneOnlyError, match="sonic train DATASET --init"):
        load_model(out)
    refused = CliRunner().invoke(
        app, ["ingest", str(unlabelled / "game"), "--checkpoint", str(out),
              "--data-dir", str(tmp_path / "data")],
    )  # fmt: skip
    assert refused.exit_code == 1
    assert "--init" in refused.output and "pretrained backbone" in refused.output
    unknown = CliRunner().invoke(app, ["pretrain", str(unlabelled), "--views", "heavy"])
    assert unknown.exit_code == 2 and "choose from" in unknown.output and "crops" in unknown.output
    unknown = CliRunner().invoke(app, ["pretrain", str(unlabelled), "--positives", "artist"])
    assert unknown.exit_code == 2 and "track or album" in unknown.output
    one_album = CliRunner().invoke(
        app,
        ["pretrain", str(unlabelled / "game"), "--checkpoint", str(tmp_path / "album.pt"),
         "--steps", "1", "--minutes", "0", "--batch-size", "4", "--max-seconds", "3",
         "--cache-dir", str(tmp_path / "cache"), "--positives", "album", "--no-progress"],
    )  # fmt: skip
    assert one_album.exit_code == 1 and "at least two folders" in one_album.output


def test_load_backbone_keeps_a_fresh_head() -> None:
    torch.manual_seed(1)
    source = build_model("resnet18", 5)
    torch.manual_seed(2)
    target = build_model("resnet18", 3)
    head_before = {k: v.clone() for k, v in target.state_dict().items() if "fc" in k}
    load_backbone(target, source.state_dict())
    head = classifier_keys(target)
    assert head == {"net.fc.weight", "net.fc.bias"}
    for key, value in target.state_dict().items():
        if key in head:
            torch.testing.assert_close(value, head_before[key])
        else:
            torch.testing.assert_close(value, source.state_dict()[key])
    with pytest.raises(ValueError, match="does not fit"):
        load_backbone(build_model("vgg", 3), source.state_dict())


def _genre_dataset(root: Path) -> tuple[Path, Path]:
    """Three genres of three short clips, and a one-fold split file (train, val, test)."""
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for g, kinds in (("tones", (0, 1, 2)), ("noise", (3, 4, 3)), ("clicks", (5, 6, 5))):
        for i, (kind, part) in enumerate(zip(kinds, parts, strict=True)):
            _wav(root / g / f"{g}.{i}.wav", kind, 3.5)
            parts[part].append(f"{g}/{g}.{i}.wav")
    split = root.parent / "split.json"
    split.write_text(json.dumps(parts))
    return root, split


def _train_from(init: str, tmp_path: Path) -> tuple[dict, GenreModel]:
    """``sonic train --init INIT`` at learning rate 0, so the weights stay where they began."""
    dataset, split = _genre_dataset(tmp_path / "genres")
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["train", str(dataset), "--init", init, "--split", str(split), "--epochs", "1",
         "--crops", "1", "--batch-size", "4", "--lr", "0", "--mixup", "0", "--final-epochs", "1",
         "--run-dir", str(run), "--cache-dir", str(tmp_path / "cache"), "--threads", "1",
         "--no-progress", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    return metrics, load_checkpoint(run / "genre_resnet18.pt")


def _assert_backbone_from(trained: GenreModel, source: dict[str, torch.Tensor]) -> None:
    for key, value in trained.network.named_parameters():
        if key.startswith("net.fc."):
            assert value.shape[0] == 3 and value.abs().sum() > 0  # a fresh 3-genre head
        else:
            torch.testing.assert_close(value, source[key], atol=0, rtol=0)


def test_sonic_train_init_starts_from_the_pretrained_backbone(tmp_path: Path) -> None:
    torch.manual_seed(3)
    backbone = build_model("resnet18", 0)
    init = tmp_path / "pretrained.pt"
    init_id = save_checkpoint(
        init, backbone, "resnet18", [], FrontendConfig(), kind="backbone", info={"kind": "test"}
    )
    metrics, trained = _train_from(str(init), tmp_path)
    assert metrics["init"]["model_id"] == init_id and metrics["init"]["kind"] == "backbone"
    assert trained.info["init"]["model_id"] == init_id
    assert trained.genres == ["clicks", "noise", "tones"]
    _assert_backbone_from(trained, load_checkpoint(init).network.state_dict())


def test_a_backbone_from_before_the_band_limit_fine_tunes_on_todays_front_end(
    tmp_path: Path,
) -> None:
    """The band limit moves no band, so an older backbone carries over; a new shape does not."""
    init = tmp_path / "old.pt"
    save_checkpoint(init, build_model("resnet18", 0), "resnet18", [],
                    FrontendConfig(band_limit_hz=None), kind="backbone")  # fmt: skip
    _, trained = _train_from(str(init), tmp_path / "ok")
    assert trained.frontend == FrontendConfig() and trained.frontend.band_limit_hz
    other = tmp_path / "96mels.pt"
    save_checkpoint(other, build_model("resnet18", 0), "resnet18", [],
                    FrontendConfig(n_mels=96), kind="backbone")  # fmt: skip
    dataset, _ = _genre_dataset(tmp_path / "genres")
    result = CliRunner().invoke(
        app, ["train", str(dataset), "--init", str(other), "--run-dir", str(tmp_path / "run"),
              "--cache-dir", str(tmp_path / "cache"), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 1 and "another front end" in result.output


def test_init_shipped_names_the_packaged_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = load_checkpoint(DEFAULT_CHECKPOINT)
    metrics, trained = _train_from("shipped", tmp_path)
    assert metrics["init"]["model_id"] == shipped.model_id
    _assert_backbone_from(trained, shipped.network.state_dict())
    monkeypatch.chdir(tmp_path)
    assert checkpoint_argument(Path("shipped")) == DEFAULT_CHECKPOINT
    (tmp_path / "shipped").write_bytes(b"")  # a file the user can see is never replaced
    assert checkpoint_argument(Path("shipped")) == Path("shipped")
    assert checkpoint_argument(Path("my.pt")) == Path("my.pt")


def test_backbone_lr_zero_trains_the_head_only() -> None:
    frontend = FrontendConfig()
    rng = np.random.default_rng(0)
    clips = [rng.normal(-40, 10, (frontend.n_mels, 2 * frontend.segment_frames)) for _ in range(4)]
    clips = [c.astype(np.float32) for c in clips]
    torch.manual_seed(4)
    start = build_model("resnet18", 2).state_dict()
    config = TrainConfig(max_epochs=1, crops_per_track=2, batch_size=4, lr=1e-2, mixup_alpha=0,
                         threads=1, backbone_lr=0.0)  # fmt: skip
    result = train_network(clips, np.array([0, 1, 0, 1]), 2, frontend, config, init_state=start)
    head = classifier_keys(result.network)
    for key, value in result.network.state_dict().items():  # batch-norm statistics too
        if key in head:
            assert not torch.equal(value, start[key]), key  # the head learnt
        else:
            torch.testing.assert_close(value, start[key], atol=0, rtol=0)  # the backbone did not
    groups, peaks = parameter_groups(result.network, 1e-3, 0.1)
    assert peaks == [1e-3, pytest.approx(1e-4)] and len(groups) == 2
    assert len(parameter_groups(result.network, 1e-3, 1.0)[0]) == 1  # default: one group


def test_sonic_train_init_refuses_another_architecture(tmp_path: Path) -> None:
    init = tmp_path / "vgg.pt"
    save_checkpoint(init, build_model("vgg", 0), "vgg", [], FrontendConfig(), kind="backbone")
    dataset, _ = _genre_dataset(tmp_path / "genres")
    result = CliRunner().invoke(
        app, ["train", str(dataset), "--init", str(init), "--run-dir", str(tmp_path / "run"),
              "--cache-dir", str(tmp_path / "cache"), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "holds a vgg network" in result.output
