"""Checkpoints, inference and aggregation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from embeddings.checkpoint import (
    UntrainedModelWarning,
    load_checkpoint,
    load_model,
    save_checkpoint,
    untrained_model,
)
from embeddings.frontend import FrontendConfig
from embeddings.inference import Predictor, aggregate, l2_normalise
from embeddings.model import build_model


def test_checkpoint_round_trip_is_fp16_and_keeps_outputs(tmp_path):
    torch.manual_seed(1)
    net = build_model("resnet18", 4).eval()
    genres = ["a", "b", "c", "d"]
    model_id = save_checkpoint(tmp_path / "m.pt", net, "resnet18", genres, FrontendConfig())
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["state_dict"]["net.conv1.weight"].dtype == torch.float16
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.model_id == model_id and loaded.genres == genres and loaded.trained
    assert loaded.network.net.conv1.in_channels == 1
    x = torch.randn(3, 1, 128, 130)
    with torch.no_grad():
        half = net.half().float()  # what fp16 storage keeps
        np.testing.assert_allclose(loaded.network(x), half(x), atol=1e-5)
    assert (
        save_checkpoint(tmp_path / "n.pt", loaded.network, "resnet18", genres, FrontendConfig())
        == model_id
    )


def test_damaged_checkpoint_gives_a_clear_error(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable Sonic Catalog checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.pt")


def test_untrained_model_is_reproducible_and_says_so():
    a, b = untrained_model(), untrained_model()
    for pa, pb in zip(a.network.parameters(), b.network.parameters(), strict=True):
        assert torch.equal(pa, pb)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model()
    if not model.trained:
        assert any(issubclass(w.category, UntrainedModelWarning) for w in caught)


def test_predictor_outputs_probabilities_and_512_dim_embeddings():
    predictor = Predictor(untrained_model(), device="cpu", precision="fp32")
    out = predictor.predict(
        np.random.default_rng(0).standard_normal((5, 128, 130)).astype(np.float32)
    )
    assert out.probabilities.shape == (5, 10) and out.embeddings.shape == (5, 512)
    np.testing.assert_allclose(out.probabilities.sum(axis=1), 1, atol=1e-5)


def test_bf16_inference_agrees_with_fp32():
    features = np.random.default_rng(1).standard_normal((4, 128, 130)).astype(np.float32)
    model = untrained_model()
    fp32 = Predictor(model, "cpu", "fp32").predict(features)
    bf16 = Predictor(model, "cpu", "bf16").predict(features)
    for a, b in zip(fp32.embeddings, bf16.embeddings, strict=True):
        cosine = float(l2_normalise(a) @ l2_normalise(b))
        assert cosine > 0.99


@pytest.mark.parametrize(
    ("method", "winner"), [("mean", 0), ("median", 0), ("max", 2), ("vote", 0)]
)
def test_aggregations_return_a_distribution(method, winner):
    # Two segments lean to genre 0, one is very sure of genre 2: only max follows it.
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    out = aggregate(probs, method)
    assert out.sum() == pytest.approx(1) and out.argmax() == winner
    with pytest.raises(ValueError):
        aggregate(probs, "nonsense")


def test_the_shipped_model_hears_a_44k_file_as_the_22k_file_it_was_made_from(tmp_path):
    """Libraries are 44.1 kHz; the genre data is 22,050 Hz. The shipped model must not care.

    The clip has energy up to Nyquist, as GTZAN's do; the 44.1 kHz FLAC copy loses the
    last kilohertz in the resampler on its way back to 22,050 Hz, and the front end's
    band limit leaves that kilohertz out of both.
    """
    import soxr

    from audio_fixtures import chord, noise, write
    from embeddings.audio import decode_all
    from embeddings.checkpoint import DEFAULT_CHECKPOINT
    from embeddings.frontend import batch_features, split_segments

    model = load_checkpoint(DEFAULT_CHECKPOINT)
    assert model.frontend == FrontendConfig()  # trained on today's front end, band limit included
    rng = np.random.default_rng(0)
    clip = (chord([110, 165, 220], 9.0) + noise(9.0, seed=1, amp=0.1)) * rng.uniform(0.5, 1.0)
    clip = clip.astype(np.float32)
    copy = write(tmp_path / "copy.flac", soxr.resample(clip, 22_050, 44_100, "VHQ"), 44_100)
    predictor = Predictor(model, device="cpu", precision="fp32")
    config = model.frontend

    def track(audio: np.ndarray):
        out = predictor.predict(batch_features(split_segments(audio, config), config))
        return aggregate(out.probabilities), l2_normalise(out.embeddings.mean(axis=0))

    native = write(tmp_path / "clip.wav", clip, 22_050, subtype="FLOAT")
    (p_clip, e_clip), (p_copy, e_copy) = (track(decode_all(f, 22_050)) for f in (native, copy))
    assert float(e_clip @ e_copy) > 0.999
    np.testing.assert_allclose(p_clip, p_copy, atol=0.01)


@pytest.mark.parametrize("n_genres", [10, 0])
def test_our_resnet18_is_torchvisions_module_for_module(n_genres):
    """embeddings/resnet.py stands in for torchvision's: same keys, same seeded weights."""
    import warnings

    from torchvision.models import resnet18 as torchvision_resnet18

    from embeddings.resnet import resnet18

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an empty head: init is a no-op
        torch.manual_seed(5)
        ours = resnet18(num_classes=n_genres).state_dict()
        torch.manual_seed(5)
        theirs = torchvision_resnet18(weights=None, num_classes=n_genres).state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_loading_the_model_does_not_import_torchvision():
    import subprocess
    import sys

    code = (
        "import sys, embeddings.model, embeddings.inference, ingest.pipeline;"
        "print('torchvision' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
