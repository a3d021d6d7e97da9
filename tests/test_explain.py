"""Explanations: Grad-CAM at ingest, band focus, IG and occlusion, why-similar."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from audio_fixtures import chord, noise, tone, write
from catalog.queries import track_details
from catalog.store import Catalog
from catalog.why_similar import why_similar
from embeddings.attributions import integrated_gradients, occlusion
from embeddings.frontend import FrontendConfig, batch_features, split_segments
from embeddings.gradcam import band_focus, class_activation_map, exact_cam, grad_cam
from embeddings.inference import Predictor
from embeddings.model import GenreResNet18, build_seeded_model, inference_copy
from helpers import run_ingest, tracks_by_path
from ingest.explain import ExplainError, explain_track
from ui.cli import app

CONFIG = FrontendConfig()


class TinyCNN(nn.Module):
    """Small enough to train in a test; same interface as the real architectures."""

    embedding_dim = 16

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.fc = nn.Linear(16, 3)

    @property
    def cam_layer(self) -> nn.Module:
        return self.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


HIGH_TONES = (5000.0, 6000.0, 7000.0, 8500.0)
LOW_TONES = (60.0, 90.0, 130.0, 180.0)


def _clips(freqs: tuple[float, ...], n: int, seed: int) -> np.ndarray:
    audio = [
        sum(tone(f, 3, amp=0.1) for f in freqs) + noise(3, seed=seed + i, amp=0.05)
        for i in range(n)
    ]
    return batch_features(np.stack([split_segments(a, CONFIG)[0] for a in audio]), CONFIG)


@pytest.fixture(scope="module")
def band_model():
    """Class 0: low tones in noise; class 1: high tones in noise; class 2: noise alone."""
    torch.manual_seed(0)
    low, high, plain = _clips(LOW_TONES, 8, 0), _clips(HIGH_TONES, 8, 100), _clips((), 8, 200)
    x = torch.from_numpy(np.concatenate([low, high, plain])).unsqueeze(1)
    y = torch.tensor([0] * len(low) + [1] * len(high) + [2] * len(plain))
    net = TinyCNN()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(80):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    net.eval()
    assert (net(x).argmax(1) == y).all()
    return net, _clips(LOW_TONES, 2, 500), _clips(HIGH_TONES, 2, 600)


def test_gradcam_puts_its_mass_in_the_band_that_holds_the_evidence(band_model):
    net, _, high = band_model
    cam = grad_cam(net, high, target=1)
    assert cam.shape == high.shape  # upsampled to the mel grid
    focus = band_focus(cam, CONFIG)
    assert sum(focus.as_dict().values()) == pytest.approx(1)
    # The high band (> 4 kHz) is about a quarter of the mel rows; the evidence is there.
    assert focus.high > 0.6, focus


def test_bf16_gradcam_at_ingest_agrees_with_fp32(model):
    """Ingest draws its maps at the inference precision; they must match fp32's."""
    features = batch_features(split_segments(chord((220, 277, 330), 12.0), CONFIG), CONFIG)
    predictor = Predictor(model, precision="bf16")
    target = int(predictor.predict(features).probabilities.mean(axis=0).argmax())
    reference = grad_cam(model.network, features, target)
    assert reference.max() > 0  # the predicted genre has evidence to show
    cam = predictor.grad_cam(features, target)
    assert cam.shape == reference.shape and np.isfinite(cam).all()
    assert np.corrcoef(cam.ravel(), reference.ravel())[0, 1] > 0.99
    np.testing.assert_allclose(cam, reference, atol=0.05 * float(reference.max()))


@pytest.mark.parametrize("which", ["shipped", "random"])
def test_cam_without_backward_equals_autograd_grad_cam_for_the_resnet(model, which):
    """Global average pooling + one linear head: Grad-CAM is the CAM, exactly.

    Ingest draws its maps from the folded inference copy without a backward pass;
    they must be the autograd Grad-CAM of the network as trained, for every genre.
    """
    network = model.network if which == "shipped" else build_seeded_model("resnet18", 10, 3)
    assert isinstance(network, GenreResNet18) and exact_cam(network)
    features = batch_features(split_segments(chord((220, 277, 330), 12.0), CONFIG), CONFIG)
    folded = inference_copy(network).to(memory_format=torch.channels_last)
    for target in range(network.classifier.out_features):
        reference = grad_cam(network, features, target)
        cam = class_activation_map(folded, features, target)
        assert cam.shape == reference.shape == features.shape
        scale = max(float(reference.max()), 1e-6)
        np.testing.assert_allclose(cam, reference, atol=1e-4 * scale, rtol=1e-3)
        np.testing.assert_allclose(class_activation_map(network, features, target),
                                   reference, atol=1e-5 * scale, rtol=1e-4)  # fmt: skip


def test_networks_without_a_linear_pooled_head_keep_autograd_grad_cam():
    assert not exact_cam(TinyCNN())
    with pytest.raises(ValueError, match="no exact CAM"):
        class_activation_map(TinyCNN(), np.zeros((1, 128, 130), np.float32), 0)


def test_band_focus_maps_mel_rows_to_their_frequencies():
    centres_low = np.zeros((1, 128, 130))
    centres_low[0, :8] = 1.0  # mel bands centred below ~210 Hz
    assert band_focus(centres_low, CONFIG).low == pytest.approx(1)
    top = np.zeros((1, 128, 130))
    top[0, 110:] = 1.0
    assert band_focus(top, CONFIG).high == pytest.approx(1)
    flat = band_focus(np.ones((2, 128, 130)), CONFIG)
    assert flat.mid > flat.high > flat.low  # the mel scale gives the mid range most rows
    assert band_focus(np.zeros((1, 128, 130)), CONFIG).as_dict() == pytest.approx(
        {"low": 1 / 3, "mid": 1 / 3, "high": 1 / 3}
    )


def test_integrated_gradients_are_complete_and_occlusion_has_the_input_shape(band_model):
    net, low, _ = band_model
    ig = integrated_gradients(net, low[:1], target=0, steps=64)
    assert ig.maps.shape == low[:1].shape
    with torch.no_grad():
        x = torch.from_numpy(low[:1]).unsqueeze(1)
        gap = float(net(x)[0, 0] - net(torch.zeros_like(x))[0, 0])
    assert abs(float(ig.maps.sum()) - gap) == pytest.approx(ig.convergence_delta, abs=1e-3)
    assert ig.convergence_delta < 0.05 * abs(gap)
    occ = occlusion(net, low[:1], target=0)
    assert occ.maps.shape == low[:1].shape
    assert np.isfinite(occ.maps).all() and np.abs(occ.maps).max() > 0


def test_ingest_writes_a_heatmap_and_stores_its_path_and_band_focus(library, data_dir, model):
    run_ingest([library.root], data_dir, model)
    track = tracks_by_path(data_dir)[str(library.good["noise_flac"])]
    with Catalog(data_dir) as catalog:
        details = track_details(catalog, track.id)
    explanation = details["explanation"]
    png = explanation["heatmap"]
    assert png == details["artefacts"]["heatmap"] and png.startswith(str(data_dir))
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 260
    assert sum(explanation["band_focus"].values()) == pytest.approx(1, abs=1e-6)
    assert explanation["genre"] == details["genre"]
    assert explanation["window_s"] == [0.0, 6.0]  # a 6.5 s track: both segments
    assert "The model listened" in explanation["sentence"]
    cli = CliRunner().invoke(app, ["show", str(track.id), "--data-dir", str(data_dir), "--json"])
    assert json.loads(cli.stdout)["explanation"]["heatmap"] == png


def test_ingest_without_heatmaps_stores_none(library, data_dir, model):
    run_ingest([library.good["noise_flac"]], data_dir, model, heatmaps=False)
    track = tracks_by_path(data_dir)[str(library.good["noise_flac"])]
    assert track.heatmap_path is None and track.focus_low is None
    assert not (data_dir / "heatmaps").exists()


def test_explain_on_demand_for_any_genre_is_cached(library, data_dir, model):
    run_ingest([library.good["chord_mp3"]], data_dir, model)
    track_id = tracks_by_path(data_dir)[str(library.good["chord_mp3"])].id
    other_genre = next(g for g in model.genres if g != tracks_by_path(data_dir)[
        str(library.good["chord_mp3"])].genre)  # fmt: skip
    with Catalog(data_dir) as catalog:
        first = explain_track(catalog, track_id, model, "occlusion", other_genre)
        again = explain_track(catalog, track_id, model, "occlusion", other_genre)
        ig = explain_track(catalog, track_id, model, "ig")
        with pytest.raises(ExplainError, match="unknown genre"):
            explain_track(catalog, track_id, model, "gradcam", "polka")
    assert first["genre"] == other_genre and not first["cached"] and again["cached"]
    assert again["band_focus"] == pytest.approx(first["band_focus"], abs=1e-3)
    assert ig["convergence_delta"] is not None
    for result in (first, ig):
        with Image.open(result["heatmap"]) as image:
            assert image.format == "PNG"


def test_why_similar_for_identical_tracks_ranks_matching_segments_first(tmp_path, data_dir, model):
    # Three different 3-second sounds in a row: in a periodic fixture (a metronome)
    # two segments are the same audio, and "matching moment" would be ill-defined.
    sr = 22050
    audio = np.concatenate(
        [tone(220, 3, sr), noise(3, sr, seed=4), chord([523.3, 659.3, 784.0], 3, sr)]
    )
    source = write(tmp_path / "lib" / "three_parts.flac", audio, sr)
    twin = source.with_name("twin.flac")
    shutil.copy(source, twin)
    run_ingest([source, twin], data_dir, model)
    rows = tracks_by_path(data_dir)
    a, b = rows[str(source)].id, rows[str(twin)].id
    with Catalog(data_dir) as catalog:
        why = why_similar(catalog, a, b)
    assert why["cosine"] == pytest.approx(1.0, abs=1e-4)
    assert why["genre_overlap"] == pytest.approx(1.0, abs=1e-4)
    assert why["band_focus"]["distance"] == pytest.approx(0.0, abs=1e-6)
    top = why["closest_moments"]
    assert top and all(m["a_start_s"] == m["b_start_s"] for m in top)
    assert top[0]["cosine"] == pytest.approx(1.0, abs=1e-2)
    assert "closest moments" in why["sentence"]
    cli = CliRunner().invoke(app, ["explain-similar", str(a), str(b), "--data-dir", str(data_dir)])
    assert cli.exit_code == 0 and "closest moments" in cli.stdout


def test_explain_uses_the_checkpoint_that_analysed_the_track(tmp_path):
    """No --checkpoint: the model the catalog recorded for the track, not the shipped one."""
    from embeddings.checkpoint import save_checkpoint
    from embeddings.model import build_seeded_model

    genres = ["bright", "dark", "noisy"]
    mine = tmp_path / "models" / "mine.pt"
    mine.parent.mkdir()
    save_checkpoint(mine, build_seeded_model("resnet18", 3, seed=5), "resnet18", genres, CONFIG)
    song = write(tmp_path / "lib" / "song.wav", chord([220.0, 277.2, 329.6], 6.0), 22050)
    data = str(tmp_path / "data")
    runner = CliRunner()
    ingested = runner.invoke(
        app, ["ingest", str(song), "--checkpoint", str(mine), "--no-heatmaps", "--workers", "1",
              "--data-dir", data, "--no-progress", "--json"],
    )  # fmt: skip
    assert ingested.exit_code == 0, ingested.output
    track_id = str(tracks_by_path(tmp_path / "data")[str(song)].id)

    result = runner.invoke(app, ["explain", track_id, "--data-dir", data, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["genre"] in genres

    # The recorded file changed: it no longer holds the model, so the shipped one is
    # tried, and refused with a reason that says what to pass.
    save_checkpoint(mine, build_seeded_model("resnet18", 3, seed=6), "resnet18", genres, CONFIG)
    refused = runner.invoke(app, ["explain", track_id, "--method", "occlusion",
                                  "--data-dir", data])  # fmt: skip
    assert refused.exit_code == 1 and "was analysed by model" in refused.stderr
